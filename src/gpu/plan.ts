/**
 * How a tensor maps onto dispatches: pure arithmetic, no GPU objects, so every edge is unit-tested.
 *
 * A tensor is cut into chunks whose bindings fit the device's maxStorageBufferBindingSize (most
 * tensors are one chunk). A chunk is a vec4 body, one invocation per vec4, plus a tail of 1 to 3
 * elements when its length is not a multiple of 4.
 */
import type { ByteRange, ResolvedParam } from './params.js';
import { BLOCK_SIZE, blocksOf, usesBlockwise8 } from '../rule/blockwise8.js';

/**
 * Invocations per workgroup of the body: one source for the WGSL override and the dispatch arithmetic.
 * Each invocation updates one vec4 (4 elements).
 *
 * @example
 * ```ts
 * const elementsPerWorkgroup = WORKGROUP_SIZE * 4; // 1024 elements per workgroup of the update pass
 * ```
 */
export const WORKGROUP_SIZE = 256;

/** Storage binding offsets must be multiples of this many bytes (WebGPU allows no larger minimum). */
const MAX_OFFSET_ALIGNMENT = 256;

export interface Chunk {
  /** First element of the tensor in this chunk. */
  readonly first: number;
  /** Elements in this chunk. */
  readonly count: number;
  /** Whole vec4s in the body. */
  readonly count4: number;
  /**
   * vec4s in each state slot (the body, plus one for a tail). For 8-bit state (`SegmentPlan.blockwise8`):
   * the u32 words of codes (4 per word, whole blocks), after which the absmax values start.
   */
  readonly slotStride: number;
  /** Elements past the body, 0 to 3. */
  readonly tailCount: number;
  /** Byte offset, from the chunk's start, of the 256-aligned binding that holds the tail. */
  readonly tailBindingOffset: number;
  /** Index of the first tail element within that binding. */
  readonly tailStart: number;
}

/**
 * The number of vec4 state slots a variant keeps: v, plus m when centered, plus b with momentum, plus
 * the f32 master copy of 16-bit parameters (masterWeights), always last.
 */
export function stateSlots(o: {
  centered: boolean;
  momentum: number;
  paramDtype?: string;
  masterWeights?: boolean;
}): number {
  return 1 + (o.centered ? 1 : 0) + (o.momentum > 0 ? 1 : 0) + (hasMaster(o) ? 1 : 0);
}

/** Whether a variant keeps an f32 master copy of its parameters: 16-bit parameters with masterWeights. */
export function hasMaster(o: { paramDtype?: string; masterWeights?: boolean }): boolean {
  return o.paramDtype !== undefined && o.paramDtype !== 'f32' && o.masterWeights === true;
}

/**
 * The largest chunk, in elements, whose parameter, gradient and state bindings fit `maxBindingBytes`
 * and whose state fits `maxBufferBytes`: a multiple of 64 elements (256 bytes), so each chunk
 * starts at an aligned binding offset.
 */
export function maxChunkElements(maxBindingBytes: number, maxBufferBytes: number, slots: number): number {
  const bytes = Math.min(maxBindingBytes, maxBufferBytes);
  const perElement = 4 * slots; // the state binding is the widest: slots f32s per element
  const elements = Math.floor(bytes / perElement / (MAX_OFFSET_ALIGNMENT / 4)) * (MAX_OFFSET_ALIGNMENT / 4);
  if (elements <= 0) {
    throw new RangeError(`the device's storage binding limit (${bytes} bytes) is too small for one chunk.`);
  }
  return elements;
}

/** Cuts a tensor of `size` elements into chunks of at most `maxChunk` elements. */
export function planChunks(size: number, maxChunk: number): Chunk[] {
  const chunks: Chunk[] = [];
  for (let first = 0; first < size; first += maxChunk) {
    const count = Math.min(maxChunk, size - first);
    const count4 = Math.floor(count / 4);
    const tailCount = count - count4 * 4;
    const bodyBytes = count4 * 16;
    const tailBindingOffset = Math.floor(bodyBytes / MAX_OFFSET_ALIGNMENT) * MAX_OFFSET_ALIGNMENT;
    chunks.push({
      first,
      count,
      count4,
      slotStride: Math.ceil(count / 4),
      tailCount,
      tailBindingOffset,
      tailStart: (bodyBytes - tailBindingOffset) / 4,
    });
  }
  return chunks;
}

/**
 * Workgroup counts for `invocations` invocations: a 1-D grid while it fits, else a 2-D grid no wider
 * than `maxPerDimension` (the shader folds y into its linear index and guards the excess).
 */
export function dispatchSize(invocations: number, maxPerDimension: number): [number, number] {
  const groups = Math.ceil(invocations / WORKGROUP_SIZE);
  if (groups <= maxPerDimension) return [groups, 1];
  const y = Math.ceil(groups / maxPerDimension);
  if (y > maxPerDimension) {
    throw new RangeError(`${invocations} invocations exceed a ${maxPerDimension}² grid of workgroups.`);
  }
  return [Math.ceil(groups / y), y];
}

/** Consecutive tensors that one dispatch (per chunk) updates: a lone tensor, or a run of an arena's. */
export interface Segment {
  readonly group: number;
  /** The span of the parameter buffer the dispatch covers, padding between arena tensors included. */
  readonly param: ByteRange;
  readonly grad: ByteRange;
  /** Elements in the span. */
  readonly size: number;
  /** Each tensor's index and first element within the span. */
  readonly members: readonly { readonly index: number; readonly first: number; readonly size: number }[];
}

/**
 * Groups tensors into segments: consecutive tensors of one group that come from one `ParamArena`
 * share a segment, padding included (the arena keeps its padding zero, and RMSProp leaves zeros
 * unchanged), so an arena's whole model updates in one dispatch. Any other tensor is a segment alone.
 */
export function planSegments(
  params: readonly ResolvedParam[],
  alone: (p: ResolvedParam) => boolean = () => false,
): Segment[] {
  const align = (bytes: number) => Math.ceil(bytes / MAX_OFFSET_ALIGNMENT) * MAX_OFFSET_ALIGNMENT;
  const segments: {
    group: number;
    alone: boolean;
    arena?: object;
    param: ByteRange;
    grad: ByteRange;
    members: Segment['members'][number][];
  }[] = [];
  for (const p of params) {
    const last = segments[segments.length - 1];
    const joins = last !== undefined && !alone(p) && !last.alone &&
      p.arena !== undefined && last.arena === p.arena && last.group === p.group &&
      p.param.buffer === last.param.buffer && p.grad.buffer === last.grad.buffer &&
      p.param.offset === align(last.param.offset + last.param.size) &&
      p.grad.offset - last.grad.offset === p.param.offset - last.param.offset;
    if (joins) {
      const first = (p.param.offset - last.param.offset) / 4;
      last.members.push({ index: p.index, first, size: p.size });
      last.param = { ...last.param, size: p.param.offset + p.param.size - last.param.offset };
      last.grad = { ...last.grad, size: p.grad.offset + p.grad.size - last.grad.offset };
    } else {
      segments.push({
        group: p.group,
        alone: alone(p),
        arena: p.arena,
        param: p.param,
        grad: p.grad,
        members: [{ index: p.index, first: 0, size: p.size }],
      });
    }
  }
  return segments.map(({ group, alone: lone, arena, param, grad, members }) => {
    // An arena's span runs on to its aligned end (zero padding), so its length is a multiple of 64: no tail.
    const end = arena && !lone
      ? Math.min(align(param.offset + param.size), param.buffer.size, grad.buffer.size - grad.offset + param.offset)
      : param.offset + param.size;
    const bytes = end - param.offset;
    // A lone tensor keeps its own count (its parameter may hold 16-bit values: paramDtype).
    return {
      group,
      members,
      size: arena && !lone ? bytes / 4 : members[0]!.size,
      param: { ...param, size: bytes },
      grad: { ...grad, size: bytes },
    };
  });
}

/**
 * Where a chunk's 16-bit tail lies (gradDtype or paramDtype 'f16' / 'bf16', 2 bytes per element): the
 * 256-aligned binding offset at or below the end of the body's `count4 * 8` bytes, and the index of
 * the tail's first u32 word within that binding. A tail of 1 to 3 elements is one or two words, the
 * last half used when the count is odd.
 */
export function packedTail(chunk: Chunk): { bindingOffset: number; start: number } {
  const bodyBytes = chunk.count4 * 8;
  const bindingOffset = Math.floor(bodyBytes / MAX_OFFSET_ALIGNMENT) * MAX_OFFSET_ALIGNMENT;
  return { bindingOffset, start: (bodyBytes - bindingOffset) / 4 };
}

/** Chunks of 16-bit gradients start at 256-byte offsets: a multiple of 128 elements. */
export function packedChunkElements(maxChunk: number): number {
  const elements = Math.floor(maxChunk / 128) * 128;
  if (elements <= 0) {
    throw new RangeError(`the device's storage binding limit is too small for one chunk of 16-bit gradients.`);
  }
  return elements;
}

/** A segment and how its state and dispatches are cut: what the optimizer allocates and records. */
export interface SegmentPlan {
  readonly segment: Segment;
  /** State slots per element (`stateSlots`). */
  readonly slots: number;
  /** Its chunks, each within the device's binding and buffer limits. */
  readonly chunks: readonly Chunk[];
  /**
   * 8-bit state (stateDtype 'int8-blockwise', a tensor of 4096 elements or more): a segment of one
   * tensor, never joined with an arena's others (each tensor's blocks start at its first element, as
   * bitsandbytes'), chunks of whole blocks, updated by stepBlockwise8.
   */
  readonly blockwise8: boolean;
}

/**
 * The whole layout of an optimizer: its parameters grouped into segments (`planSegments`), each cut
 * into chunks that fit `limits`. `groupOptions[g]` are group g's options.
 */
export function planUpdate(
  params: readonly ResolvedParam[],
  groupOptions: readonly {
    centered: boolean;
    momentum: number;
    gradDtype: string;
    paramDtype: string;
    masterWeights: boolean;
    stateDtype?: string;
  }[],
  limits: { readonly maxStorageBufferBindingSize: number; readonly maxBufferSize: number },
): SegmentPlan[] {
  const eightBit = (p: { group: number; size: number }) => usesBlockwise8(groupOptions[p.group]!, p.size);
  return planSegments(params, eightBit).map((segment) => {
    const o = groupOptions[segment.group]!;
    const slots = stateSlots(o);
    const maxChunk = maxChunkElements(limits.maxStorageBufferBindingSize, limits.maxBufferSize, slots);
    if (segment.members.length === 1 && eightBit({ group: segment.group, size: segment.size })) {
      // The parameter binding (4 bytes an element) is the widest; chunks of whole blocks.
      const blockChunk = Math.floor(maxChunk / BLOCK_SIZE) * BLOCK_SIZE;
      if (blockChunk <= 0) {
        throw new RangeError('the device\'s storage binding limit is too small for one 8-bit block.');
      }
      const chunks = planChunks(segment.size, blockChunk)
        .map((c) => ({ ...c, slotStride: (blocksOf(c.count) * BLOCK_SIZE) / 4 }));
      return { segment, slots, chunks, blockwise8: true };
    }
    const halves = o.gradDtype !== 'f32' || o.paramDtype !== 'f32'; // 16-bit bindings start at 256-byte offsets too
    return {
      segment,
      slots,
      chunks: planChunks(segment.size, halves ? packedChunkElements(maxChunk) : maxChunk),
      blockwise8: false,
    };
  });
}
