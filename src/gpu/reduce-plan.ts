/**
 * How the gradient pre-pass (shaders/grad-norm.wgsl) cuts the gradients into blocks: pure
 * arithmetic, shared by the GPU pre-pass (src/gpu/grad-prepass.ts) and its CPU twin (`gradNormStats`),
 * so that both sum in one fixed order.
 *
 * Each tensor is a run of vec4s (its last 1 to 3 elements zero-padded to one more), cut into blocks
 * of `REDUCE_WORKGROUP_SIZE * laneVec4s` vec4s; each block is one workgroup and one partial sum;
 * partials are numbered tensor by tensor. `laneVec4s` grows with the model so that the blocks stay
 * near a target number of partials that the adapter sets (`reduceTargetPartials`): on a GPU, 4,096
 * blocks of 256 lanes (about a million lanes, several waves of every streaming multiprocessor of the
 * largest GPUs, whose memory needs megabytes of loads in flight); on a CPU adapter (SwiftShader,
 * lavapipe), which pays for each workgroup barrier per SIMD group, 64. One workgroup then sums the
 * partials, at most 16 a lane. The plan, and so the order of every addition, is fixed for a given
 * adapter kind and set of tensor sizes; the CPU twin (`gradNormStats`) is given the same target.
 */
import type { ByteRange } from './params.js';
import type { Segment } from './plan.js';

/**
 * Invocations per workgroup of the reduction; each reads one vec4 (4 elements) per round.
 *
 * @example
 * ```ts
 * const elementsPerRound = REDUCE_WORKGROUP_SIZE * 4; // 1024 elements per workgroup per round
 * ```
 */
export const REDUCE_WORKGROUP_SIZE = 256;

/**
 * About how many partial sums (blocks) the pre-pass aims at on a GPU, and on a CPU adapter. The
 * default of the CPU twin (`gradNormStats`, `ReferenceRMSProp`) is the GPU's.
 *
 * @example
 * ```ts
 * const target = REDUCE_TARGET_PARTIALS.gpu; // 4096
 * ```
 */
export const REDUCE_TARGET_PARTIALS = { gpu: 4096, cpu: 64 } as const;

/** Per device, a target that tests set to run another adapter kind's plan (`forceReduceTarget`). */
const forcedTargets = new WeakMap<object, number>();

/**
 * Makes `reduceTargetPartials(device)` return `target` for this device, before any optimizer with the
 * pre-pass is made on it: for tests that run a GPU's plan on a CPU adapter. Not public API.
 *
 * @example
 * ```ts
 * forceReduceTarget(device, REDUCE_TARGET_PARTIALS.gpu);
 * ```
 */
export function forceReduceTarget(device: object, target: number): void {
  forcedTargets.set(device, target);
}

/** What the pre-pass's plan (and the 8-bit step's layout) is chosen from: the adapter's info (`device.adapterInfo`), if any. */
export interface AdapterLike {
  readonly adapterInfo?: {
    readonly vendor?: string;
    readonly architecture?: string;
    readonly device?: string;
    readonly description?: string;
    readonly isFallbackAdapter?: boolean;
  };
}

/**
 * The number of partial sums the gradient pre-pass aims at on `device`: `REDUCE_TARGET_PARTIALS.cpu`
 * on a CPU adapter (a fallback adapter, or one whose info names SwiftShader, llvmpipe or lavapipe),
 * else `.gpu`. Give it to the CPU twin (`{ reducePartials }`) so that it sums in the same order.
 *
 * @example
 * ```ts
 * const twin = new ReferenceRMSProp(params, options, { reducePartials: reduceTargetPartials(device) });
 * ```
 */
export function reduceTargetPartials(device: AdapterLike): number {
  const forced = forcedTargets.get(device);
  if (forced !== undefined) return forced;
  return isCpuAdapter(device) ? REDUCE_TARGET_PARTIALS.cpu : REDUCE_TARGET_PARTIALS.gpu;
}

/**
 * Whether `device` runs on a CPU adapter: a fallback adapter, or one whose info names SwiftShader,
 * llvmpipe or lavapipe. Without adapter info (older browsers), a GPU.
 *
 * @example
 * ```ts
 * isCpuAdapter({ adapterInfo: { vendor: 'google', description: 'SwiftShader driver' } }); // true
 * ```
 */
export function isCpuAdapter(device: AdapterLike): boolean {
  const info = device.adapterInfo;
  if (!info) return false;
  const names = [info.vendor, info.architecture, info.device, info.description].join(' ');
  return info.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe/i.test(names);
}

/**
 * Lanes per group of the first of the two rounds in which a workgroup sums its lanes (shaders/grad-norm.wgsl
 * `workgroupSum`): `REDUCE_WORKGROUP_SIZE` is its square.
 *
 * @example
 * ```ts
 * REDUCE_GROUP * REDUCE_GROUP === REDUCE_WORKGROUP_SIZE; // true
 * ```
 */
export const REDUCE_GROUP = 16;

/**
 * Whether a plan aiming at `targetPartials` blocks makes each lane's sum a partial of its own, with no
 * workgroup barrier: when that keeps the partials at most 65,536 (256 a lane of `finish`), that is,
 * for a CPU adapter's plan; a GPU's sums each block in workgroup memory first.
 *
 * @example
 * ```ts
 * usesLanePartials(REDUCE_TARGET_PARTIALS.cpu); // true
 * ```
 */
export function usesLanePartials(targetPartials: number = REDUCE_TARGET_PARTIALS.gpu): boolean {
  return targetPartials * REDUCE_WORKGROUP_SIZE <= 65536;
}

const hugeScratch = new Float32Array(1);

/**
 * The bits of f32(2^62 / unscale): a finite gradient at or above it in magnitude is HUGE for the
 * pre-pass (shaders/grad-norm.wgsl `classify`): its square, unscaled, could reach 2^124.
 *
 * @example
 * ```ts
 * hugeBits(1) === 0x5e800000; // 2^62
 * ```
 */
export function hugeBits(unscale: number): number {
  hugeScratch[0] = 2 ** 62 / Math.fround(unscale);
  return new Uint32Array(hugeScratch.buffer)[0]!;
}

/** Storage binding offsets are multiples of this many bytes (WebGPU allows no larger minimum). */
const OFFSET_ALIGNMENT = 256;

/**
 * vec4s each lane sums per block for tensors of `sizes` elements, aiming at `targetPartials` blocks:
 * 1 for models up to 1024 · targetPartials elements (a block is then 1024 elements), more for larger
 * ones (4.2M elements: 1 on a GPU, 65 on a CPU adapter), never fewer than one block per tensor.
 */
export function reduceLaneVec4s(
  sizes: readonly number[],
  targetPartials: number = REDUCE_TARGET_PARTIALS.gpu,
): number {
  let vec4s = 0;
  for (const size of sizes) vec4s += Math.ceil(size / 4);
  return Math.max(1, Math.ceil(vec4s / (REDUCE_WORKGROUP_SIZE * targetPartials)));
}

/** One workgroup of `partialNorms`: `struct Block` of shaders/grad-norm.wgsl. */
export interface ReduceBlock {
  /** First vec4 of the block in its run's gradient binding. */
  readonly first4: number;
  /** vec4s read from that binding. */
  readonly count4: number;
  /** 1 to 3 when the block ends with the tensor's tail (read from the run's tail binding), else 0. */
  readonly tailCount: number;
  /** Where its partial goes: blocks are numbered tensor by tensor, in the order given. */
  readonly partial: number;
}

/** One dispatch of `partialNorms`: a run of whole blocks inside one gradient binding. */
export interface ReduceRun {
  /** The segment (`planSegments`) the run is part of. */
  readonly segment: number;
  /** The body binding: vec4s (or, 16-bit, vec2u words) from a 256-aligned offset; absent when no block reads one. */
  readonly body?: ByteRange;
  /** The binding holding a lone tensor's tail, from a 256-aligned offset; absent without a tail. */
  readonly tail?: ByteRange;
  /** With `tail`: the tail's first element (16-bit: its first u32 word) in that binding. */
  readonly tailStart: number;
  readonly blocks: readonly ReduceBlock[];
}

export interface ReducePlan {
  readonly laneVec4s: number;
  /** Each lane's sum is a partial (`usesLanePartials`): `partialCount` blocks make 256 partials each. */
  readonly lanePartials: boolean;
  readonly runs: readonly ReduceRun[];
  readonly partialCount: number;
}

/**
 * The pre-pass of `segments` (in order): each segment's tensors cut into blocks (aiming at
 * `targetPartials`, by default the GPU's), the blocks grouped into runs whose bindings fit
 * `maxBindingBytes` (and whose blocks fit `maxBlocksPerRun` workgroups).
 * `elementBytes[s]` is 4 for f32 gradients, 2 for 16-bit ones (a lone tensor only).
 *
 * A tensor's last vec4 comes from the body binding when the segment's span holds it whole (an
 * arena's zero padding), else from a tail binding (a lone tensor of a length not a multiple of 4).
 */
export function planReduce(
  segments: readonly Segment[],
  elementBytes: readonly (2 | 4)[],
  limits: { readonly maxBindingBytes: number; readonly maxBlocksPerRun: number; readonly targetPartials?: number },
): ReducePlan {
  if (elementBytes.length !== segments.length) throw new RangeError('planReduce: one elementBytes entry per segment.');
  const laneVec4s = reduceLaneVec4s(segments.flatMap((s) => s.members.map((m) => m.size)), limits.targetPartials);
  const blockVec4s = REDUCE_WORKGROUP_SIZE * laneVec4s;
  const runs: ReduceRun[] = [];
  let partial = 0;
  segments.forEach((segment, s) => {
    const bytes = elementBytes[s]!;
    const vec4Bytes = 4 * bytes;
    // The segment's blocks, at absolute vec4 positions within its gradient range.
    const blocks: { at4: number; count4: number; tailCount: number; partial: number }[] = [];
    let tail: { at4: number; count: number } | undefined;
    for (const m of segment.members) {
      const padded = Math.ceil(m.size / 4);
      const holdsPadded = m.first + padded * 4 <= segment.size; // an arena's span runs on through its padding
      const body4 = holdsPadded ? padded : Math.floor(m.size / 4);
      const tailCount = holdsPadded ? 0 : m.size - body4 * 4;
      if (tailCount > 0) tail = { at4: m.first / 4 + body4, count: tailCount };
      const total = body4 + (tailCount > 0 ? 1 : 0);
      for (let b = 0; b < total; b += blockVec4s) {
        const end = Math.min(b + blockVec4s, total);
        const endsWithTail = tailCount > 0 && end === total;
        blocks.push({
          at4: m.first / 4 + b,
          count4: end - b - (endsWithTail ? 1 : 0),
          tailCount: endsWithTail ? tailCount : 0,
          partial: partial++,
        });
      }
    }
    // Runs of whole blocks: each binding starts at its first block (256-aligned: a tensor's start,
    // or a multiple of blockVec4s vec4s into it) and ends after its last block's vec4s.
    for (let i = 0; i < blocks.length;) {
      const start = blocks[i]!.at4;
      if ((start * vec4Bytes) % OFFSET_ALIGNMENT !== 0) {
        throw new Error(`planReduce: block at vec4 ${start} is not 256-byte aligned.`);
      }
      let j = i + 1;
      while (j < blocks.length && j - i < limits.maxBlocksPerRun &&
        (blocks[j]!.at4 + blocks[j]!.count4 - start) * vec4Bytes <= limits.maxBindingBytes) j++;
      const run = blocks.slice(i, j);
      const last = run[run.length - 1]!;
      const endBytes = (last.at4 + last.count4 - start) * vec4Bytes;
      const body = endBytes > 0
        ? { buffer: segment.grad.buffer, offset: segment.grad.offset + start * vec4Bytes, size: endBytes }
        : undefined;
      let tailRange: ByteRange | undefined, tailStart = 0;
      if (last.tailCount > 0 && tail) {
        // As src/gpu/plan.ts places a chunk's tail: from the 256-aligned offset at or below its first element.
        const tailByte = tail.at4 * vec4Bytes;
        const bindingAt = Math.floor(tailByte / OFFSET_ALIGNMENT) * OFFSET_ALIGNMENT;
        const endByte = Math.ceil((tailByte + tail.count * bytes) / 4) * 4; // whole words (16-bit: odd counts)
        tailRange = { buffer: segment.grad.buffer, offset: segment.grad.offset + bindingAt, size: endByte - bindingAt };
        tailStart = (tailByte - bindingAt) / 4;
      }
      runs.push({
        segment: s,
        ...(body ? { body } : {}),
        ...(tailRange ? { tail: tailRange } : {}),
        tailStart,
        blocks: run.map((b) => ({
          first4: b.at4 - start,
          count4: b.count4,
          tailCount: b.tailCount,
          partial: b.partial,
        })),
      });
      i = j;
    }
  });
  return { laneVec4s, lanePartials: usesLanePartials(limits.targetPartials), runs, partialCount: partial };
}
