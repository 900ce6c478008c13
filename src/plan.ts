/**
 * How a tensor maps onto dispatches: pure arithmetic, no GPU objects, so every edge is unit-tested.
 *
 * A tensor is cut into chunks whose bindings fit the device's maxStorageBufferBindingSize (most
 * tensors are one chunk). A chunk is a vec4 body, one invocation per vec4, plus a tail of 1 to 3
 * elements when its length is not a multiple of 4.
 */

/** Invocations per workgroup of the body: one source for the WGSL override and the dispatch arithmetic. */
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
  /** vec4s in each state slot (the body, plus one for a tail). */
  readonly slotStride: number;
  /** Elements past the body, 0 to 3. */
  readonly tailCount: number;
  /** Byte offset, from the chunk's start, of the 256-aligned binding that holds the tail. */
  readonly tailBindingOffset: number;
  /** Index of the first tail element within that binding. */
  readonly tailStart: number;
}

/** The number of vec4 state slots a variant keeps: v, plus m when centered, plus b with momentum. */
export function stateSlots(o: { centered: boolean; momentum: number }): number {
  return 1 + (o.centered ? 1 : 0) + (o.momentum > 0 ? 1 : 0);
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
  if (elements <= 0) throw new RangeError(`the device's storage binding limit (${bytes} bytes) is too small for one chunk.`);
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
  if (y > maxPerDimension) throw new RangeError(`${invocations} invocations exceed a ${maxPerDimension}² grid of workgroups.`);
  return [Math.ceil(groups / y), y];
}
