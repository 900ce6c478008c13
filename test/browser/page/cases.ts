/**
 * The in-page checks, as data: what test/browser/page/checks.ts runs on the real navigator.gpu and
 * what test/browser/webgpu.test.ts expects back, one vitest test per case. No WebGPU here, so Node
 * can import it.
 */
import { presets, type RMSPropOptions } from '../../../src/index';

/**
 * The tolerance is the adapter's (demo/check/compare.ts `toleranceFor`): headless Chromium runs
 * WebGPU on its own SwiftShader, where every case is measured bit for bit (0 ULPs); on a GPU, each
 * element within the bound that WGSL's accuracy table allows (demo/check/bound.ts). The data keep
 * cancellations out (gradients keep one sign per element, parameters stay in ±[2, 4)), so that a
 * foil (the same case with the feature under test changed) lands far outside either tolerance.
 */

/** GPU against CPU reference after `steps` steps of `options`, on a tensor of `size` elements. */
export interface ReferenceCase {
  readonly kind: 'reference';
  readonly name: string;
  readonly size: number;
  readonly steps: number;
  readonly options: Partial<RMSPropOptions>;
  /**
   * Options that differ only in the feature under test: the reference run with them must fail the
   * comparison with the GPU at the adapter's tolerance, or the case could not tell the feature was applied.
   */
  readonly foil?: Partial<RMSPropOptions>;
}

/** `step(encoder)` between the caller's own gradient pass and a copy, several steps per encoder. */
export interface EncoderCase {
  readonly kind: 'encoder';
  readonly name: string;
  readonly size: number;
  readonly encoders: number;
  readonly stepsPerEncoder: number;
  readonly options: Partial<RMSPropOptions>;
}

/** `lr` changed between steps; changing it between two steps in one encoder throws. */
export interface LrCase {
  readonly kind: 'lr';
  readonly name: string;
  readonly size: number;
  readonly options: Partial<RMSPropOptions>;
}

/** stateDict()/loadStateDict() between GPU optimizers and the CPU twin, bit for bit. */
export interface StateDictCase {
  readonly kind: 'stateDict';
  readonly name: string;
  readonly size: number;
  readonly options: Partial<RMSPropOptions>;
}

/** Param groups with their own options, tensors as GPUBufferBinding ranges of shared buffers. */
export interface GroupsCase {
  readonly kind: 'groups';
  readonly name: string;
}

export type CaseSpec = ReferenceCase | EncoderCase | LrCase | StateDictCase | GroupsCase;

const VARIANT_SIZE = 1027; // 256 vec4s (a whole workgroup) and a tail of 3
const VARIANT_STEPS = 5;
const variant = (name: string, options: Partial<RMSPropOptions>, foil?: Partial<RMSPropOptions>): ReferenceCase => ({
  kind: 'reference', name: `variant: ${name}`, size: VARIANT_SIZE, steps: VARIANT_STEPS, options, ...(foil ? { foil } : {}),
});

// Sizes around the vec4 body / tail split and the workgroup, with every state slot (v, m, b) in use.
const ALL_SLOTS: Partial<RMSPropOptions> = { centered: true, momentum: 0.9 };
const size = (n: number): ReferenceCase => ({
  kind: 'reference', name: `size ${n} (centered, momentum 0.9)`, size: n, steps: 3, options: ALL_SLOTS, foil: { ...ALL_SLOTS, centered: false },
});

export const CASES: readonly CaseSpec[] = [
  variant('plain, PyTorch defaults (momentum 0)', {}, { alpha: 0.9 }),
  variant('centered', { centered: true }, { centered: false }),
  variant('momentum 0.9', { momentum: 0.9 }, { momentum: 0 }),
  variant('momentum 0.9, lrInMomentum', { momentum: 0.9, lrInMomentum: true }, { momentum: 0.9, lrInMomentum: false }),
  // eps 1e-3 makes the two forms of the denominator far apart (1e-8 would hide the difference in rounding).
  variant('epsMode inside', { epsMode: 'inside', eps: 1e-3 }, { epsMode: 'outside', eps: 1e-3 }),
  variant('epsMode outside', { epsMode: 'outside', eps: 1e-3 }, { epsMode: 'inside', eps: 1e-3 }),
  variant('maximize', { maximize: true }, { maximize: false }),
  variant('weightDecay 0.05', { weightDecay: 0.05 }, { weightDecay: 0 }),
  variant('initialScale 1', { initialScale: 1 }, { initialScale: 0 }),
  variant('momentum 0.9, centered', { momentum: 0.9, centered: true }, { momentum: 0.9, centered: false }),
  variant(
    'everything at once',
    { centered: true, momentum: 0.9, lrInMomentum: true, epsMode: 'inside', eps: 1e-3, maximize: true, weightDecay: 0.05, initialScale: 0.5, alpha: 0.9, lr: 3e-3 },
    { centered: true, momentum: 0.9, lrInMomentum: true, epsMode: 'inside', eps: 1e-3, maximize: true, weightDecay: 0, initialScale: 0.5, alpha: 0.9, lr: 3e-3 },
  ),
  variant('preset keras, momentum 0.9', { ...presets.keras, momentum: 0.9 }),
  variant('nesterov, momentum 0.9', { momentum: 0.9, nesterov: true }, { momentum: 0.9 }),
  variant('nesterov, Optax form (lrInMomentum, eps inside)', { momentum: 0.9, nesterov: true, lrInMomentum: true, epsMode: 'inside' }, { momentum: 0.9, lrInMomentum: true, epsMode: 'inside' }),
  variant('decoupled weightDecay 0.05', { weightDecay: 0.05, weightDecayMode: 'decoupled' }, { weightDecay: 0.05 }),
  variant('biasCorrection (Optax)', { biasCorrection: true, alpha: 0.9, epsMode: 'inside' }, { alpha: 0.9, epsMode: 'inside' }),
  variant('clipGradNorm 1 (the pre-pass), skipNonFinite', { clipGradNorm: 1, skipNonFinite: true, momentum: 0.9 }, { momentum: 0.9 }),
  variant('preset tf1, centered', { ...presets.tf1, centered: true }),
  variant('preset tfjs', { ...presets.tfjs }),
  variant('preset optax', { ...presets.optax }),
  size(1),
  size(3),
  size(4),
  size(5),
  size(64),
  size(1023),
  size(4099),
  size(65537),
  { kind: 'encoder', name: 'step(encoder) between the caller\'s gradient pass and a copy', size: 1029, encoders: 2, stepsPerEncoder: 2, options: { centered: true, momentum: 0.9 } },
  { kind: 'lr', name: 'lr changed between steps', size: 515, options: { momentum: 0.9 } },
  { kind: 'stateDict', name: 'stateDict/loadStateDict round trip, bit-exact', size: 1031, options: { centered: true, momentum: 0.9, initialScale: 0.5 } },
  { kind: 'groups', name: 'param groups over GPUBufferBinding ranges of shared buffers' },
];

/** One case's outcome, as the page reports it. */
export interface CaseResult {
  readonly name: string;
  readonly ok: boolean;
  /** The largest GPU-vs-reference distance seen, in ULPs (0 for bit-exact checks). */
  readonly maxUlps: number;
  /** The adapter's tolerance: '0 ULPs' (measured) or 'WGSL bound' (derived). */
  readonly tolerance: string;
  /** Whether every GPU-vs-reference element was within that tolerance. */
  readonly withinTolerance: boolean;
  /** The largest fraction of the WGSL bound any element used (0 when all were equal). */
  readonly boundUsed: number;
  /** What went wrong, or a summary of what was checked. */
  readonly message: string;
  readonly ms: number;
}

/** What the page found out about its adapter. */
export interface AdapterReport {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  readonly isFallbackAdapter: boolean;
  readonly features: readonly string[];
}

/** `window.__results`, set once when the page is done (or failed before running cases). */
export interface PageResults {
  readonly done: true;
  /** Missing when there is no adapter. */
  readonly adapter?: AdapterReport;
  readonly cases: readonly CaseResult[];
  /** `uncapturederror` events on the device, over the whole run (each case also has its own error scopes). */
  readonly uncapturedErrors: readonly string[];
  /** An error that stopped the page before or between cases (no WebGPU, no adapter, a lost device). */
  readonly fatal?: string;
  readonly ms: number;
}

declare global {
  interface Window {
    __results?: PageResults;
  }
}
