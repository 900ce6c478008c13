/**
 * How the 8-bit state's step (shaders/rmsprop.wgsl, stateDtype 'int8-blockwise') spreads a block of 256
 * elements over invocations, per adapter. Both layouts compute the same values bit for bit; only speed
 * differs:
 * - `'workgroup'` (a GPU): 64 invocations a block, four elements each, coalesced vec4 loads, the block's
 *   absmax through workgroup memory and one barrier; bitsandbytes' kernel is laid out this way.
 * - `'lanes'` (a CPU adapter: SwiftShader, lavapipe): one invocation a block, no barrier. A CPU driver
 *   runs a workgroup as SIMD groups that it switches between at every barrier; measured 2-5x faster
 *   there (docs/benchmarks.md, "8-bit state").
 */
import { isCpuAdapter, type AdapterLike } from './reduce-plan.js';

export type Blockwise8Layout = 'workgroup' | 'lanes';

/** Blocks of 256 elements per workgroup, per layout (shaders/rmsprop.wgsl BLOCKS_PER_WORKGROUP, LANE_BLOCKS_PER_WORKGROUP). */
export const BLOCKS_PER_WORKGROUP: Readonly<Record<Blockwise8Layout, number>> = { workgroup: 4, lanes: 64 };

/** Per device, a layout that tests set to run the other adapter kind's kernels (`forceBlockwise8Layout`). */
const forced = new WeakMap<object, Blockwise8Layout>();

/**
 * Makes `blockwise8Layout(device)` return `layout` for this device, for optimizers made after the call:
 * for tests that run a GPU's kernels on a CPU adapter, and the reverse. Not public API.
 *
 * @example
 * ```ts
 * forceBlockwise8Layout(device, 'workgroup');
 * ```
 */
export function forceBlockwise8Layout(device: object, layout: Blockwise8Layout | undefined): void {
  if (layout === undefined) forced.delete(device);
  else forced.set(device, layout);
}

/**
 * The layout of the 8-bit step on `device`: `'lanes'` on a CPU adapter (`isCpuAdapter`), else `'workgroup'`.
 *
 * @example
 * ```ts
 * const perWorkgroup = BLOCKS_PER_WORKGROUP[blockwise8Layout(device)];
 * ```
 */
export function blockwise8Layout(device: AdapterLike): Blockwise8Layout {
  return forced.get(device) ?? (isCpuAdapter(device) ? 'lanes' : 'workgroup');
}
