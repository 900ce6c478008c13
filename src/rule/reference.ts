/**
 * The CPU reference of the RMSProp rule: the twin of shaders/rmsprop.wgsl, on Float32Array.
 *
 * Every operation rounds to f32 (Math.fround) in the order PyTorch's CPU kernels use, and the five
 * multiply-adds that PyTorch fuses (and the shader writes as `fma`) round once (`fmaf`). With that,
 * this file reproduces torch.optim.RMSprop bit for bit on every recorded fixture.
 *
 * WGSL lets `fma` round once or twice: GPUs with a hardware fma round once, SwiftShader rounds the
 * product first. `multiplyAdd: 'separate'` makes the reference round like the latter, and then it
 * equals SwiftShader's results bit for bit (`detectMultiplyAdd(device)` tells which an adapter
 * does). Hardware GPUs may still differ by a few ULPs: their sqrt and division need not be
 * correctly rounded.
 */
import { fmaf } from './fma.js';
import { resolveOptions, type RMSPropOptions, type ResolvedOptions } from './options.js';
import {
  REDUCE_GROUP, REDUCE_TARGET_PARTIALS, REDUCE_WORKGROUP_SIZE, hugeBits, reduceLaneVec4s, usesLanePartials,
} from '../gpu/reduce-plan.js';

/**
 * Optimizer state of one tensor, named as PyTorch's `RMSprop.state` names it.
 * `gradAvg` exists only when centered, `momentumBuffer` only when momentum > 0.
 *
 * @example
 * ```ts
 * const state: ReferenceState = createReferenceState(4, { centered: true });
 * state.squareAvg; // Float32Array(4) of zeros; state.gradAvg too; no momentumBuffer
 * ```
 */
export interface ReferenceState {
  /** Number of elements. */
  readonly size: number;
  /** Mean square `v`. */
  readonly squareAvg: Float32Array;
  /** Mean gradient `m` (centered only). */
  readonly gradAvg?: Float32Array;
  /** Momentum buffer `b` (momentum > 0 only). */
  readonly momentumBuffer?: Float32Array;
}

/**
 * Allocates the state of one tensor of `size` elements for `options`: `squareAvg` filled with
 * `initialScale`, `gradAvg` and `momentumBuffer` (when used) with zeros.
 *
 * @example
 * ```ts
 * const state = createReferenceState(param.length, { momentum: 0.9 });
 * state.momentumBuffer!.length === param.length; // true
 * ```
 */
export function createReferenceState(size: number, options?: Partial<RMSPropOptions>): ReferenceState {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`size must be a positive integer element count, got ${size}.`);
  }
  const o = resolveOptions(options);
  const squareAvg = new Float32Array(size);
  if (o.initialScale !== 0) squareAvg.fill(o.initialScale);
  return {
    size,
    squareAvg,
    ...(o.centered ? { gradAvg: new Float32Array(size) } : {}),
    ...(o.momentum > 0 ? { momentumBuffer: new Float32Array(size) } : {}),
  };
}

/**
 * What one step needs besides the options: the 1-based number of the step (for `biasCorrection`) and
 * the factor every gradient is multiplied by first (`clipGradNorm`; see {@link gradNormStats}).
 *
 * @example
 * ```ts
 * const options = { lr: 0.01, clipGradNorm: 1 };
 * const { scale } = gradNormStats([g], options.clipGradNorm);
 * const context: StepContext = { gradScale: scale };
 * referenceStep(p, g, state, options, 'fused', context);
 * ```
 */
export interface StepContext {
  /** The 1-based count of this step among the applied ones; needed when `biasCorrection` is on. */
  step?: number;
  /** The clipping factor of this step (1 unless `clipGradNorm`); multiplied in only when clipGradNorm > 0. */
  gradScale?: number;
}

/**
 * One RMSProp step on the CPU, in place on `param` and `state` (DESIGN.md's rule, every option).
 * Checks its arguments before touching anything. `multiplyAdd` picks how the rule's multiply-adds
 * round: `'fused'` (the default) as PyTorch, `'separate'` as SwiftShader. With `biasCorrection`,
 * `context.step` gives the step number; with `clipGradNorm`, `context.gradScale` the factor (from
 * {@link gradNormStats} over every tensor of the step). `skipNonFinite` is the caller's: a single
 * tensor's step cannot skip the others.
 *
 * @example
 * ```ts
 * const p = new Float32Array([1, 2, 3]), g = new Float32Array([0.1, -0.2, 0.3]);
 * const s = createReferenceState(3);
 * referenceStep(p, g, s, { lr: 0.01 });
 * referenceStep(p, g, s, { lr: 0.01, biasCorrection: true }, 'fused', { step: 2 });
 * ```
 */
export function referenceStep(
  param: Float32Array,
  grad: Float32Array,
  state: ReferenceState,
  options?: Partial<RMSPropOptions>,
  multiplyAdd: MultiplyAdd = 'fused',
  context: StepContext = {},
): void {
  const o = resolveOptions(options);
  checkMultiplyAdd(multiplyAdd);
  checkStep(param, grad, state, o);
  const hyper = stepHyper(o, context, 'referenceStep(context)');
  stepResolved(param, grad, state, o, multiplyAdd, hyper);
}

/** The per-step values the shader reads (its ring slot, its geometry, the control buffer), besides the options. */
export interface StepHyper {
  /** `1 - lr * weightDecay`, rounded once (decoupled weight decay). */
  readonly decayFactor: number;
  /** `1 - alpha^t` in f32 from the f32 alpha, as Optax computes it (bias correction). */
  readonly biasCorrection: number;
  /** The clipping factor (clipGradNorm). */
  readonly gradScale: number;
  /** `1 / lossScale`, rounded once (as GradScaler's `inv_scale`). */
  readonly unscale: number;
}

/**
 * The per-step values for options `o` at `context` (as the host writes them for the shader):
 * computed in double precision and rounded once to f32, as PyTorch rounds a Python scalar; except
 * the bias correction `1 - alpha^t`, which Optax computes in float32 from the float32 decay
 * (`alpha^t` rounded to f32, then `1 -` it): at alpha 0.999 the double-precision value differs by
 * 1.3e-5 relative at t = 1, far outside Optax's own test tolerance (rtol 1e-6).
 */
export function stepHyper(o: ResolvedOptions, context: StepContext = {}, where = 'context'): StepHyper {
  let biasCorrection = 1;
  if (o.biasCorrection) {
    const t = context.step;
    if (!Number.isSafeInteger(t) || t! < 1) {
      throw new TypeError(
        `${where}.step must be the 1-based step number (an integer >= 1) when biasCorrection is on, ` +
        `got ${String(t)}.`,
      );
    }
    biasCorrection = biasCorrectionFactor(o.alpha, t!);
  }
  const gradScale = context.gradScale ?? 1;
  if (typeof gradScale !== 'number') {
    throw new TypeError(`${where}.gradScale must be a number, got ${typeof gradScale}.`);
  }
  return {
    decayFactor: decayFactorOf(o.lr, o.weightDecay),
    biasCorrection,
    gradScale: f(gradScale),
    unscale: f(1 / o.lossScale),
  };
}

/** Decoupled weight decay's factor `1 - lr * weightDecay`, rounded once (what the GPU's step values hold). */
export function decayFactorOf(lr: number, weightDecay: number): number {
  return f(1 - lr * weightDecay);
}

/**
 * Bias correction's `1 - alpha^t` at the 1-based step `t` (what the GPU's step values hold), as
 * Optax computes `1 - decay**count`: in float32, from the float32 decay (a power, then a subtraction).
 */
export function biasCorrectionFactor(alpha: number, t: number): number {
  return f(1 - f(f(alpha) ** t));
}

/** Throws unless `param`, `grad` and `state` fit each other and `o`. */
export function checkStep(param: unknown, grad: unknown, state: ReferenceState, o: ResolvedOptions, where = ''): void {
  if (!(param instanceof Float32Array)) throw new TypeError(`${where}param must be a Float32Array.`);
  if (!(grad instanceof Float32Array)) throw new TypeError(`${where}grad must be a Float32Array.`);
  if (grad.length !== param.length) {
    throw new RangeError(`${where}grad has ${grad.length} elements but param has ${param.length}: they must match.`);
  }
  if (state.squareAvg.length !== param.length) {
    throw new RangeError(
      `${where}state is for ${state.squareAvg.length} elements but param has ${param.length}: ` +
      'make it with createReferenceState(param.length, options).',
    );
  }
  if (o.centered && state.gradAvg?.length !== param.length) {
    throw new TypeError(
      `${where}state has no gradAvg but options.centered is true: make it with createReferenceState(size, options).`,
    );
  }
  if (o.momentum > 0 && state.momentumBuffer?.length !== param.length) {
    throw new TypeError(
      `${where}state has no momentumBuffer but options.momentum > 0: ` +
      'make it with createReferenceState(size, options).',
    );
  }
}

const f = Math.fround;

/**
 * How `a*b + c` rounds in the rule's five multiply-adds: `'fused'` once (PyTorch's CPU kernels, and
 * GPUs whose WGSL `fma` is a hardware fma), `'separate'` after the product and again after the sum
 * (SwiftShader's `fma`).
 *
 * @example
 * ```ts
 * const multiplyAdd: MultiplyAdd = await detectMultiplyAdd(device); // 'separate' on SwiftShader
 * referenceStep(p, g, state, { lr: 0.01 }, multiplyAdd);
 * ```
 */
export type MultiplyAdd = 'fused' | 'separate';

const separateMulAdd = (a: number, b: number, c: number): number => f(f(a * b) + c);
const mulAdds: Record<MultiplyAdd, (a: number, b: number, c: number) => number> = {
  fused: fmaf,
  separate: separateMulAdd,
};

/** Throws unless `multiplyAdd` names a rounding. */
export function checkMultiplyAdd(multiplyAdd: unknown, where = 'multiplyAdd'): asserts multiplyAdd is MultiplyAdd {
  if (multiplyAdd !== 'fused' && multiplyAdd !== 'separate') {
    throw new TypeError(`${where} must be 'fused' or 'separate', got ${String(multiplyAdd)}.`);
  }
}

/** The rule itself, on checked arguments. Keep it line for line with shaders/rmsprop.wgsl. */
export function stepResolved(
  param: Float32Array,
  grad: Float32Array,
  state: ReferenceState,
  o: ResolvedOptions,
  multiplyAdd: MultiplyAdd = 'fused',
  hyper: StepHyper = stepHyper(o),
): void {
  const fma = mulAdds[multiplyAdd];
  const lr = f(o.lr), alpha = f(o.alpha), oneMinusAlpha = f(1 - o.alpha), eps = f(o.eps);
  const momentum = f(o.momentum), weightDecay = f(o.weightDecay);
  const { decayFactor, biasCorrection: bc, gradScale, unscale } = hyper;
  const { squareAvg: v, gradAvg: m, momentumBuffer: b } = state;
  const useMomentum = o.momentum > 0, inside = o.epsMode === 'inside';
  const l2 = o.weightDecay !== 0 && o.weightDecayMode === 'l2';
  const decoupled = o.weightDecay !== 0 && o.weightDecayMode === 'decoupled';
  const clip = o.clipGradNorm > 0, correct = o.biasCorrection, scaled = o.lossScale !== 1;
  for (let i = 0; i < param.length; i++) {
    let p = param[i]!;
    if (decoupled) p = f(p * decayFactor);
    let g = grad[i]!;
    if (scaled) g = f(g * unscale);
    if (clip) g = f(g * gradScale);
    if (o.maximize) g = -g;
    if (l2) g = fma(p, weightDecay, g);
    const vi = fma(f(oneMinusAlpha * g), g, f(alpha * v[i]!));
    v[i] = vi;
    let d = correct ? f(vi / bc) : vi;
    if (m) {
      const mi = fma(g, oneMinusAlpha, f(alpha * m[i]!));
      m[i] = mi;
      const mh = correct ? f(mi / bc) : mi;
      d = Math.max(fma(-mh, mh, d), 0);
    }
    const den = inside ? f(Math.sqrt(f(d + eps))) : f(f(Math.sqrt(d)) + eps);
    if (useMomentum && b) {
      if (o.lrInMomentum) {
        const u = f(f(lr * g) / den);
        const bi = f(f(momentum * b[i]!) + u);
        b[i] = bi;
        param[i] = f(p - (o.nesterov ? f(u + f(momentum * bi)) : bi));
      } else {
        const q = f(g / den);
        const bi = f(f(momentum * b[i]!) + q);
        b[i] = bi;
        param[i] = fma(o.nesterov ? fma(bi, momentum, q) : bi, -lr, p);
      }
    } else {
      param[i] = f(p - f(f(lr * g) / den));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The gradient pre-pass (skipNonFinite, clipGradNorm): the twin of shaders/grad-norm.wgsl
// ---------------------------------------------------------------------------------------------

export { REDUCE_WORKGROUP_SIZE } from '../gpu/reduce-plan.js';

/**
 * What the pre-pass finds over every gradient of a step.
 *
 * @example
 * ```ts
 * const stats: GradStats = gradNormStats([gradA, gradB], 1.0);
 * if (!stats.nonFinite) console.log(`norm ${stats.norm}, gradients scaled by ${stats.scale}`);
 * ```
 */
export interface GradStats {
  /** Whether any element is NaN or ±Inf (its bits). */
  readonly nonFinite: boolean;
  /**
   * Whether the sum of squares of the (finite) gradients reached 2^126 (the norm 2^63, about 9.2e18),
   * where the pre-pass stops adding so that no sum overflows: the norm is then +Infinity.
   */
  readonly overflow: boolean;
  /**
   * Whether `skipNonFinite` skips the step: an element NaN or ±Inf, or `overflow` while clipping
   * (`maxNorm > 0`: the clipped step would have zero gradients).
   */
  readonly skip: boolean;
  /**
   * The global L2 norm, sqrt of the sum of squares (in the GPU's order);
   * NaN if an element is, +Infinity on ±Inf or `overflow`.
   */
  readonly norm: number;
  /**
   * `min(1, maxNorm / (norm + 1e-6))` as PyTorch rounds it (1 when maxNorm is 0: no clipping); NaN
   * when an element is NaN, exactly 0 when the norm is +Infinity (PyTorch's max_norm / inf).
   */
  readonly scale: number;
}

const EXPONENT = 0x7f800000, MAGNITUDE = 0x7fffffff;
/** 2^126: sums of squares below it add without overflow (shaders/grad-norm.wgsl `BIG`). */
const BIG = 2 ** 126;
const statsBits = new Uint32Array(1), statsFloats = new Float32Array(statsBits.buffer);
const INF_SEEN = 1, NAN_SEEN = 2, HUGE = 4;

/**
 * The pre-pass over all gradients of a step, in the GPU's order of operations (shaders/grad-norm.wgsl,
 * blocks as src/gpu/reduce-plan.ts cuts them for `targetPartials`): each tensor as vec4s (its last 1
 * to 3 elements zero-padded to one more), in blocks of 256 lanes * `laneVec4s`; lane l of a block
 * adds up, in turn, vec4s l, l + 256, ... of it, each vec4's squares summed `x*x` then three
 * multiply-adds; the lanes summed in two rounds (16 groups of 16 in turn, then the 16 in turn), or,
 * for a plan of few blocks (`usesLanePartials`), each lane's sum a partial of its own; the
 * partials of all tensors in order, strided over 256 lanes and summed in the same two rounds; then
 * the square root. Each vec4 is tested on its bits first, before `unscale` (`1 / lossScale`, see
 * `stepHyper`) multiplies it for the sum: NaN, ±Inf, or at least 2^62 unscaled (HUGE: not summed);
 * every addition saturates at 2^126 (HUGE). The norm and the clipping factor (PyTorch's
 * `clip_grad_norm_`: `(1 / (norm + 1e-6)) * maxNorm`, clamped at 1) then follow from those flags:
 * see {@link GradStats}.
 *
 * @param targetPartials The plan's target (`reduceTargetPartials(device)` for the GPU this twins).
 * @example
 * ```ts
 * const { norm, scale, nonFinite } = gradNormStats([gradA, gradB], 1.0);
 * ```
 */
export function gradNormStats(
  grads: readonly Float32Array[],
  maxNorm: number,
  multiplyAdd: MultiplyAdd = 'fused',
  unscale = 1,
  targetPartials: number = REDUCE_TARGET_PARTIALS.gpu,
): GradStats {
  checkMultiplyAdd(multiplyAdd);
  const fma = mulAdds[multiplyAdd];
  const W = REDUCE_WORKGROUP_SIZE;
  const K = reduceLaneVec4s(grads.map((g) => g.length), targetPartials);
  const lanePartials = usesLanePartials(targetPartials);
  const huge = hugeBits(unscale);
  const lanes = new Float64Array(W);
  const laneFlags = new Uint32Array(W);
  const partials: { sum: number; flags: number }[] = [];
  // shaders/grad-norm.wgsl `addSq`: saturating at BIG.
  let flags = 0;
  const addSq = (a: number, b: number) => {
    if (a >= BIG || b >= BIG) {
      flags |= HUGE;
      return BIG;
    }
    return f(a + b);
  };
  const classify = (x: number) => {
    statsFloats[0] = x;
    const m = statsBits[0]! & MAGNITUDE;
    if (m > EXPONENT) return NAN_SEEN;
    if (m === EXPONENT) return INF_SEEN;
    return m >= huge ? HUGE : 0;
  };
  // shaders/grad-norm.wgsl `workgroupSum`: lane g < 16 adds lanes 16g .. 16g + 15 in turn, then lane 0 those 16.
  const tree = () => {
    let total = 0;
    for (let g = 0; g < REDUCE_GROUP; g++) {
      let t = lanes[REDUCE_GROUP * g]!;
      for (let k = 1; k < REDUCE_GROUP; k++) t = addSq(t, lanes[REDUCE_GROUP * g + k]!);
      total = g === 0 ? t : addSq(total, t);
    }
    return total;
  };
  // A lane's step over vec4 j of g (shaders/grad-norm.wgsl `laneStep`): tested, then summed unless flagged.
  const laneStep = (s: number, g: Float32Array, j: number) => {
    const a = g[4 * j]!, b = g[4 * j + 1] ?? 0, c = g[4 * j + 2] ?? 0, d = g[4 * j + 3] ?? 0;
    const found = classify(a) | classify(b) | classify(c) | classify(d);
    flags |= found;
    if (found !== 0) return s;
    const x = f(a * unscale), y = f(b * unscale), z = f(c * unscale), w = f(d * unscale);
    return addSq(s, fma(w, w, fma(z, z, fma(y, y, f(x * x)))));
  };
  for (const g of grads) {
    const vec4s = Math.ceil(g.length / 4);
    for (let first = 0; first < vec4s; first += W * K) {
      const rounds = Math.min(K, Math.ceil((vec4s - first) / W));
      for (let l = 0; l < W; l++) {
        flags = 0;
        let s = 0;
        for (let k = 0; k < rounds; k++) {
          const j = first + l + k * W;
          if (j < vec4s) s = laneStep(s, g, j); // past the end: a masked load of zeros adds +0
        }
        lanes[l] = s;
        laneFlags[l] = flags;
      }
      if (lanePartials) { // each lane's sum a partial of its own (shaders/grad-norm.wgsl LANE_PARTIALS)
        for (let l = 0; l < W; l++) partials.push({ sum: lanes[l]!, flags: laneFlags[l]! });
        continue;
      }
      flags = laneFlags.reduce((a, b) => a | b, 0);
      const sum = tree();
      partials.push({ sum, flags });
    }
  }
  for (let l = 0; l < W; l++) {
    flags = 0;
    let s = 0;
    for (let k = l; k < partials.length; k += W) {
      s = addSq(s, partials[k]!.sum);
      flags |= partials[k]!.flags;
    }
    lanes[l] = s;
    laneFlags[l] = flags;
  }
  flags = laneFlags.reduce((a, b) => a | b, 0);
  const sum = tree();
  const clipping = maxNorm > 0;
  let norm = f(Math.sqrt(sum));
  let scale = 1;
  if (clipping) {
    const c = f(f(1 / f(norm + f(1e-6))) * f(maxNorm));
    scale = c >= 1 ? 1 : c;
  }
  if (flags & (INF_SEEN | HUGE)) {
    norm = Infinity;
    scale = clipping ? 0 : 1;
  }
  if (flags & NAN_SEEN) {
    norm = NaN;
    scale = clipping ? NaN : 1;
  }
  const nonFinite = (flags & (INF_SEEN | NAN_SEEN)) !== 0;
  const overflow = (flags & HUGE) !== 0;
  return { nonFinite, overflow, skip: nonFinite || (clipping && overflow), norm, scale };
}
