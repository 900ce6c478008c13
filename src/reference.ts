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

/**
 * Optimizer state of one tensor, named as PyTorch's `RMSprop.state` names it.
 * `gradAvg` exists only when centered, `momentumBuffer` only when momentum > 0.
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
 * One RMSProp step on the CPU, in place on `param` and `state` (DESIGN.md's rule, every option).
 * Checks its arguments before touching anything. `multiplyAdd` picks how the rule's multiply-adds
 * round: `'fused'` (the default) as PyTorch, `'separate'` as SwiftShader.
 *
 * @example
 * ```ts
 * const p = new Float32Array([1, 2, 3]), g = new Float32Array([0.1, -0.2, 0.3]);
 * const s = createReferenceState(3);
 * referenceStep(p, g, s, { lr: 0.01 });
 * ```
 */
export function referenceStep(
  param: Float32Array,
  grad: Float32Array,
  state: ReferenceState,
  options?: Partial<RMSPropOptions>,
  multiplyAdd: MultiplyAdd = 'fused',
): void {
  const o = resolveOptions(options);
  checkMultiplyAdd(multiplyAdd);
  checkStep(param, grad, state, o);
  stepResolved(param, grad, state, o, multiplyAdd);
}

/** Throws unless `param`, `grad` and `state` fit each other and `o`. */
export function checkStep(param: unknown, grad: unknown, state: ReferenceState, o: ResolvedOptions, where = ''): void {
  if (!(param instanceof Float32Array)) throw new TypeError(`${where}param must be a Float32Array.`);
  if (!(grad instanceof Float32Array)) throw new TypeError(`${where}grad must be a Float32Array.`);
  if (grad.length !== param.length) {
    throw new RangeError(`${where}grad has ${grad.length} elements but param has ${param.length}: they must match.`);
  }
  if (state.squareAvg.length !== param.length) {
    throw new RangeError(`${where}state is for ${state.squareAvg.length} elements but param has ${param.length}: make it with createReferenceState(param.length, options).`);
  }
  if (o.centered && state.gradAvg?.length !== param.length) {
    throw new TypeError(`${where}state has no gradAvg but options.centered is true: make it with createReferenceState(size, options).`);
  }
  if (o.momentum > 0 && state.momentumBuffer?.length !== param.length) {
    throw new TypeError(`${where}state has no momentumBuffer but options.momentum > 0: make it with createReferenceState(size, options).`);
  }
}

const f = Math.fround;

/**
 * How `a*b + c` rounds in the rule's five multiply-adds: `'fused'` once (PyTorch's CPU kernels, and
 * GPUs whose WGSL `fma` is a hardware fma), `'separate'` after the product and again after the sum
 * (SwiftShader's `fma`).
 */
export type MultiplyAdd = 'fused' | 'separate';

const separateMulAdd = (a: number, b: number, c: number): number => f(f(a * b) + c);
const mulAdds: Record<MultiplyAdd, (a: number, b: number, c: number) => number> = { fused: fmaf, separate: separateMulAdd };

/** Throws unless `multiplyAdd` names a rounding. */
export function checkMultiplyAdd(multiplyAdd: unknown, where = 'multiplyAdd'): asserts multiplyAdd is MultiplyAdd {
  if (multiplyAdd !== 'fused' && multiplyAdd !== 'separate') {
    throw new TypeError(`${where} must be 'fused' or 'separate', got ${String(multiplyAdd)}.`);
  }
}

/** The rule itself, on checked arguments. Keep it line for line with shaders/rmsprop.wgsl. */
export function stepResolved(param: Float32Array, grad: Float32Array, state: ReferenceState, o: ResolvedOptions, multiplyAdd: MultiplyAdd = 'fused'): void {
  const fma = mulAdds[multiplyAdd];
  const lr = f(o.lr), alpha = f(o.alpha), oneMinusAlpha = f(1 - o.alpha), eps = f(o.eps);
  const momentum = f(o.momentum), weightDecay = f(o.weightDecay);
  const { squareAvg: v, gradAvg: m, momentumBuffer: b } = state;
  const useMomentum = o.momentum > 0, decay = o.weightDecay !== 0, inside = o.epsMode === 'inside';
  for (let i = 0; i < param.length; i++) {
    const p = param[i]!;
    let g = grad[i]!;
    if (o.maximize) g = -g;
    if (decay) g = fma(p, weightDecay, g);
    const vi = fma(f(oneMinusAlpha * g), g, f(alpha * v[i]!));
    v[i] = vi;
    let d = vi;
    if (m) {
      const mi = fma(g, oneMinusAlpha, f(alpha * m[i]!));
      m[i] = mi;
      d = Math.max(fma(-mi, mi, vi), 0);
    }
    const den = inside ? f(Math.sqrt(f(d + eps))) : f(f(Math.sqrt(d)) + eps);
    if (useMomentum && b) {
      if (o.lrInMomentum) {
        const bi = f(f(momentum * b[i]!) + f(f(lr * g) / den));
        b[i] = bi;
        param[i] = f(p - bi);
      } else {
        const bi = f(f(momentum * b[i]!) + f(g / den));
        b[i] = bi;
        param[i] = fma(bi, -lr, p);
      }
    } else {
      param[i] = f(p - f(f(lr * g) / den));
    }
  }
}
