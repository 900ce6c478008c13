/**
 * How far a conformant WebGPU implementation may be from the CPU reference: a bound per element,
 * derived from WGSL's accuracy table (WGSL §15.7.4.1, f32) operation by operation through the
 * update rule. docs/tolerance.md is the derivation in words; this file is it in code.
 *
 * Each quantity is carried as a pair: `x`, the CPU reference's f32 value (computed here exactly as
 * src/rule/reference.ts computes it), and `e`, a bound on |gpu - x|. An operation z = op(a, b) gives
 *
 *   |gpu_z - cpu_z| <= |op(ã, b̃) - op(a, b)|       propagated: what the inputs' errors do
 *                    + |gpu rounding of op(ã, b̃)|   WGSL's allowance for op, on the GPU's operands
 *                    + |cpu rounding of op(a, b)|   0.5 ULP (round to nearest even), on the CPU
 *
 * with WGSL's allowances (§15.7.4.1 and §15.7.2):
 * - `x + y`, `x - y`, `x * y`: "correctly rounded", which WGSL defines as either neighbour of the
 *   exact result: less than 1 ULP.
 * - `x / y`: 2.5 ULP for |y| in [2^-126, 2^126] (outside that range the bound is Infinity).
 * - `sqrt(x)`: inherited from `1.0 / inverseSqrt(x)`: inverseSqrt within 2 ULP, then a 2.5 ULP
 *   division: at most 2·2^-23 + 2.5·2^-23 relative, 4.5 "ULPs at the top of the binade" (up to 9
 *   ULPs of a result near the bottom of its binade).
 * - `fma(a, b, c)`: inherited from `a * b + c`: fused (one rounding) or not (two); and a plain
 *   `a * b + c` may be contracted into an fma ("may fuse if at least as accurate", §15.7.5). The
 *   two-rounding bound covers all three.
 * - Reassociation (§15.7.5) is allowed: products and quotients keep the same relative bound in any
 *   order; the one sum of three terms in the rule (Nesterov with lr inside the buffer) is bounded
 *   with every rounding at the magnitude of all its terms together.
 * - Flush to zero: any input or output below 2^-126 may become 0: every operation adds 2^-126
 *   absolute, every subnormal input its own magnitude.
 * - `sqrt(0)` is taken to be 0 (1 / inverseSqrt(0) is 1 / inf); `max(x, 0)` is exact.
 * The CPU side rounds to nearest (0.5 ULP) except where src/rule/reference.ts fuses (`fmaf`) or rounds a
 * multiply-add twice (`multiplyAdd: 'separate'`); the bound follows the reference's choice.
 *
 * A ULP of a normal f32 x is at most 2^-23 |x|, so each allowance is k · 2^-23 · |magnitude|,
 * the magnitude of the operation's exact result on the GPU's operands (|cpu value| + what the
 * inputs' errors can add): that is the "magnitude floor" of each operation. Errors compound
 * exactly as the rule does (through alpha·v, momentum·b, the division by den), so the bound is
 * large where the rule is ill-conditioned (a gradient that cancels against weightDecay·p and is
 * then divided by a tiny den) and a few ULPs where it is not. Products of errors are kept (no
 * linearization); SAFE covers this file's own double-precision arithmetic.
 */
import { fmaf } from '../../src/rule/fma.js';
import type { ResolvedOptions } from '../../src/rule/options.js';
import type { MultiplyAdd, StepHyper } from '../../src/rule/reference.js';
import { REDUCE_GROUP, REDUCE_TARGET_PARTIALS, reduceLaneVec4s, usesLanePartials } from '../../src/gpu/reduce-plan.js';

const f = Math.fround;
/** A ULP of a normal f32 x is at most U·|x|. */
const U = 2 ** -23;
/** Flush to zero: an input or output below FLT_MIN may become 0 (an absolute error below FLT_MIN). */
const TINY = 2 ** -126;
/** Slack for this file's own double rounding and second-order terms of the sqrt's allowance. */
const SAFE = 1 + 2 ** -20;

/** WGSL's allowances, in ULPs of the result (§15.7.4.1). */
export const WGSL_ULPS = Object.freeze({
  add: 1, mul: 1, div: 2.5, inverseSqrt: 2,
  /** sqrt = 1 / inverseSqrt: the inverseSqrt's relative error, then a division. */
  sqrt: 2 + 2.5,
});

/** A CPU value and the bound on how far the GPU's value may be from it. */
interface B {
  readonly x: number;
  readonly e: number;
}

const exact = (x: number): B => ({ x, e: 0 });
/** An operand read from memory: a subnormal may be flushed to 0 on the GPU. */
const input = (x: number, e: number): B => ({ x, e: x !== 0 && Math.abs(x) < TINY ? e + Math.abs(x) : e });
/** The GPU's rounding of a result whose exact value has magnitude at most `m`, with allowance `k` ULPs. */
const gpu = (k: number, m: number): number => k * U * m * SAFE + TINY;
/** The CPU's rounding to nearest of a result it rounded to `x`. */
const cpu = (x: number): number => 0.5 * U * Math.abs(x) * SAFE + 2 ** -150;
/** An upper bound on the magnitude of the exact result on the GPU's operands. */
const mag = (x: number, prop: number): number => Math.abs(x) * (1 + U) + prop;

const neg = (a: B): B => ({ x: -a.x, e: a.e });
const max0 = (a: B): B => ({ x: Math.max(a.x, 0), e: a.e });

function add(a: B, b: B): B {
  const x = f(a.x + b.x);
  const prop = a.e + b.e;
  return { x, e: prop + gpu(WGSL_ULPS.add, mag(x, prop)) + cpu(x) };
}

function mul(a: B, b: B): B {
  const x = f(a.x * b.x);
  const prop = Math.abs(a.x) * b.e + Math.abs(b.x) * a.e + a.e * b.e;
  return { x, e: prop + gpu(WGSL_ULPS.mul, mag(x, prop)) + cpu(x) };
}

function div(a: B, b: B): B {
  const x = f(a.x / b.x);
  const low = Math.abs(b.x) - b.e;
  // WGSL bounds x / y only for |y| in [2^-126, 2^126]: a divisor that may leave it bounds nothing.
  if (!(low >= TINY) || Math.abs(b.x) + b.e > 2 ** 126) return { x, e: Infinity };
  const prop = (Math.abs(a.x) * b.e + Math.abs(b.x) * a.e) / (Math.abs(b.x) * low);
  return { x, e: prop + gpu(WGSL_ULPS.div, mag(x, prop)) + cpu(x) };
}

function sqrt(a: B): B {
  const x = f(Math.sqrt(a.x));
  // |sqrt(ã) - sqrt(a)| <= min(sqrt(|ã - a|), |ã - a| / (sqrt(a) + sqrt(ã))).
  const prop = a.e === 0 ? 0 : Math.min(Math.sqrt(a.e), a.e / (Math.sqrt(a.x) + Math.sqrt(Math.max(a.x - a.e, 0))));
  // 1 / inverseSqrt: r = (1 + ρ) / sqrt(x), |ρ| <= 2U; 1 / r = sqrt(x) / (1 + ρ), then 2.5 ULPs of division.
  const m = Math.sqrt(a.x + a.e) * (1 + U);
  const rsqrt = (WGSL_ULPS.inverseSqrt * U) / (1 - WGSL_ULPS.inverseSqrt * U);
  return { x, e: prop + rsqrt * m * SAFE + gpu(WGSL_ULPS.div, m * (1 + rsqrt)) + cpu(x) };
}

/** `a * b + c`: fused or not on the GPU (either is allowed); on the CPU as `multiplyAdd` says. */
function fma(a: B, b: B, c: B, multiplyAdd: MultiplyAdd): B {
  const ab = a.x * b.x; // exact in a double
  const x = multiplyAdd === 'fused' ? fmaf(a.x, b.x, c.x) : f(f(ab) + c.x);
  const propAb = Math.abs(a.x) * b.e + Math.abs(b.x) * a.e + a.e * b.e;
  const prop = propAb + c.e;
  const product = gpu(WGSL_ULPS.mul, Math.abs(ab) + propAb); // the product's rounding, if not fused
  const sum = gpu(WGSL_ULPS.add, Math.abs(ab + c.x) * (1 + U) + prop + product);
  const cpuSide = cpu(x) + (multiplyAdd === 'separate' ? cpu(ab) : 0);
  return { x, e: prop + product + sum + cpuSide };
}

/** The errors carried per element of one tensor (absolute, in the value's units). */
export interface TensorBounds {
  /** The f32 parameter (or master copy) the update computes. */
  readonly param: Float64Array;
  readonly squareAvg: Float64Array;
  readonly gradAvg?: Float64Array;
  readonly momentumBuffer?: Float64Array;
  /** 16-bit parameters: the value written to the caller's buffer, rounded to f16 or bf16. */
  readonly written?: Float64Array;
}

/**
 * Zero bounds (GPU and CPU start from the same bits) for a tensor of `size` elements and `o`'s state slots.
 *
 * @example
 * ```ts
 * const bounds = zeroBounds(1031, resolveOptions({ momentum: 0.9 }));
 * ```
 */
export function zeroBounds(size: number, o: ResolvedOptions): TensorBounds {
  return {
    param: new Float64Array(size),
    squareAvg: new Float64Array(size),
    ...(o.centered ? { gradAvg: new Float64Array(size) } : {}),
    ...(o.momentum > 0 ? { momentumBuffer: new Float64Array(size) } : {}),
    ...(o.paramDtype !== 'f32' ? { written: new Float64Array(size) } : {}),
  };
}

/** One tensor's values before a step, as the CPU reference holds them (parameters as f32: a master copy, or decoded). */
export interface StepValues {
  readonly param: Float32Array;
  readonly squareAvg: Float32Array;
  readonly gradAvg?: Float32Array | undefined;
  readonly momentumBuffer?: Float32Array | undefined;
}

/** The gap between 16-bit values around |x| (f16 or bf16), Infinity past f16's range. */
function ulp16(x: number, dtype: 'f16' | 'bf16'): number {
  const a = Math.abs(x);
  if (dtype === 'f16') {
    if (a >= 65504) return Infinity;
    return a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
  }
  return a < 2 ** -126 ? 2 ** -133 : 2 ** (Math.floor(Math.log2(a)) - 7);
}

/**
 * One step of the bound: from the values before the step (`pre`, as the CPU reference had them),
 * the gradient, the group's options, the step's hyperparameters and the bound on the GPU's
 * clipping factor (`gradScaleError`, from {@link normBound}), updates `bounds` in place, and
 * returns the CPU's values after the step, computed the way src/rule/reference.ts computes them (so
 * a caller can check that this file still follows the rule: they must equal the reference's bit for bit).
 * `gradError`, when the GPU computed its own gradients (from its own parameters), bounds how far
 * they may be from the CPU's; otherwise both sides step on the same gradient bits.
 *
 * @example
 * ```ts
 * const after = boundStep(pre, grad, o, stepHyper(o, { step: 1 }), 'separate', 0, bounds);
 * ```
 */
export function boundStep(
  pre: StepValues,
  grad: Float32Array,
  o: ResolvedOptions,
  hyper: StepHyper,
  multiplyAdd: MultiplyAdd,
  gradScaleError: number,
  bounds: TensorBounds,
  gradError?: ArrayLike<number>,
): { param: Float32Array; squareAvg: Float32Array; gradAvg?: Float32Array; momentumBuffer?: Float32Array } {
  const n = pre.param.length;
  const out = {
    param: new Float32Array(n),
    squareAvg: new Float32Array(n),
    ...(pre.gradAvg ? { gradAvg: new Float32Array(n) } : {}),
    ...(pre.momentumBuffer ? { momentumBuffer: new Float32Array(n) } : {}),
  };
  const lr = f(o.lr), alpha = exact(f(o.alpha)), oneMinusAlpha = exact(f(1 - o.alpha)), eps = exact(f(o.eps));
  const momentum = exact(f(o.momentum)), weightDecay = exact(f(o.weightDecay));
  const decay = exact(hyper.decayFactor), bc = exact(hyper.biasCorrection), unscale = exact(hyper.unscale);
  const scale: B = { x: hyper.gradScale, e: gradScaleError };
  const l2 = o.weightDecay !== 0 && o.weightDecayMode === 'l2';
  const decoupled = o.weightDecay !== 0 && o.weightDecayMode === 'decoupled';
  const half = o.paramDtype !== 'f32' ? o.paramDtype : undefined;
  // Without a master copy, a 16-bit parameter is read back from its 16-bit value each step.
  const paramIn = half && !o.masterWeights ? bounds.written! : bounds.param;
  for (let i = 0; i < n; i++) {
    let p = input(pre.param[i]!, paramIn[i]!);
    if (decoupled) p = mul(p, decay);
    let g = input(grad[i]!, gradError?.[i] ?? 0);
    if (o.lossScale !== 1) g = mul(g, unscale);
    if (o.clipGradNorm > 0) g = mul(g, scale);
    if (o.maximize) g = neg(g);
    if (l2) g = fma(p, weightDecay, g, multiplyAdd);
    const v = fma(mul(oneMinusAlpha, g), g, mul(alpha, input(pre.squareAvg[i]!, bounds.squareAvg[i]!)), multiplyAdd);
    out.squareAvg[i] = v.x;
    bounds.squareAvg[i] = v.e;
    let d = o.biasCorrection ? div(v, bc) : v;
    if (pre.gradAvg) {
      const m = fma(g, oneMinusAlpha, mul(alpha, input(pre.gradAvg[i]!, bounds.gradAvg![i]!)), multiplyAdd);
      out.gradAvg![i] = m.x;
      bounds.gradAvg![i] = m.e;
      const mh = o.biasCorrection ? div(m, bc) : m;
      d = max0(fma(neg(mh), mh, d, multiplyAdd));
    }
    const den = o.epsMode === 'inside' ? sqrt(add(d, eps)) : add(sqrt(d), eps);
    let next: B;
    if (o.momentum > 0 && pre.momentumBuffer) {
      const b0 = input(pre.momentumBuffer[i]!, bounds.momentumBuffer![i]!);
      if (o.lrInMomentum) {
        const u = div(mul(exact(lr), g), den);
        const b = add(mul(momentum, b0), u);
        out.momentumBuffer![i] = b.x;
        bounds.momentumBuffer![i] = b.e;
        if (o.nesterov) {
          // p - (u + momentum * b): a sum of three terms, which WGSL may reassociate.
          const mb = mul(momentum, b);
          const s = f(u.x + mb.x), x = f(p.x - s);
          const prop = p.e + u.e + mb.e;
          const all = (Math.abs(p.x) + Math.abs(u.x) + Math.abs(mb.x)) * (1 + U) + prop;
          next = { x, e: prop + 2 * gpu(WGSL_ULPS.add, all) + cpu(s) + cpu(x) };
        } else {
          next = add(p, neg(b));
        }
      } else {
        const q = div(g, den);
        const b = add(mul(momentum, b0), q);
        out.momentumBuffer![i] = b.x;
        bounds.momentumBuffer![i] = b.e;
        const s = o.nesterov ? fma(b, momentum, q, multiplyAdd) : b;
        next = fma(s, exact(-lr), p, multiplyAdd);
      }
    } else {
      next = add(p, neg(div(mul(exact(lr), g), den)));
    }
    out.param[i] = next.x;
    bounds.param[i] = next.e;
    if (half) bounds.written![i] = next.e === 0 ? 0 : next.e + ulp16(Math.abs(next.x) + next.e, half);
  }
  return out;
}

/** The number of partial sums the GPU's norm pre-pass makes at most for tensors of these sizes. */
function partialsAtMost(sizes: readonly number[], lane: number, lanePartials: boolean): number {
  // One per block of 256 lanes of `lane` vec4s of each tensor (blocks never cross tensors), or one a lane.
  return sizes.reduce((n, s) => n + Math.ceil(Math.ceil(s / 4) / (256 * lane)), 0) * (lanePartials ? 256 : 1);
}

/**
 * The bound on the GPU's global gradient norm and clipping factor (shaders/grad-norm.wgsl) against
 * the CPU's (`gradNormStats`): the sum of squares of every element (all terms >= 0, so each
 * rounding is at most 1 ULP of the whole sum) over 1 square and 4·lane - 1 adds per lane (`lane`
 * vec4s of 4 squares each, in any order: `reduceLaneVec4s` for the plan's `targetPartials`), 2 more
 * for the loss-scale multiply,
 * the workgroup's two rounds of 15 adds, ceil(partials / 256) adds per lane of the finish loop (any
 * order) and two more rounds of 15; then sqrt,
 * `+ 1e-6`, `1 / x` and `* maxNorm` as single operations. Keep it in step with the pre-pass's plan. `cpuNorm` and `cpuScale` are the CPU's values.
 *
 * @example
 * ```ts
 * const stats = gradNormStats(grads, 1);
 * const { normError, scaleError } = normBound(grads, 1, 1, stats.norm, stats.scale);
 * ```
 */
export function normBound(
  grads: readonly Float32Array[],
  maxNorm: number,
  unscale: number,
  cpuNorm: number,
  cpuScale: number,
  targetPartials: number = REDUCE_TARGET_PARTIALS.gpu,
): { normError: number; scaleError: number } {
  // Infinity or NaN is decided by the gradients' bits (shaders/grad-norm.wgsl `finish`), the same on
  // every adapter: no rounding to bound.
  if (!Number.isFinite(cpuNorm)) return { normError: 0, scaleError: 0 };
  let s = 0;
  for (const g of grads) {
    for (let i = 0; i < g.length; i++) { const x = g[i]! * unscale; s += x * x; }
  }
  // A lane sums `lane` vec4s of 4 squares each (src/gpu/reduce-plan.ts), in any order: 1 rounding of a
  // square, 4·lane - 1 of adds; a workgroup then adds its lanes in two rounds of REDUCE_GROUP - 1 adds.
  const lane = reduceLaneVec4s(grads.map((g) => g.length), targetPartials);
  // Lane partials skip the block's workgroup rounds: counting them anyway keeps the bound an upper one.
  const partials = partialsAtMost(grads.map((g) => g.length), lane, usesLanePartials(targetPartials));
  const rounds = 2 * (REDUCE_GROUP - 1);
  const depth = (unscale !== 1 ? 2 : 0) + 1 + (4 * lane - 1) + rounds + Math.ceil(partials / 256) + rounds;
  // The GPU's sum is within `depth` roundings of the exact sum s, each at most one ULP of s; its
  // norm then within the sqrt's bound of f32(sqrt(s)), which is a known distance from the CPU's norm.
  const norm = sqrt({ x: s, e: depth * U * s * SAFE * (1 + depth * U) + depth * TINY });
  const normError = norm.e + Math.abs(norm.x - cpuNorm);
  if (!(maxNorm > 0)) return { normError, scaleError: 0 };
  const c = mul(div(exact(1), add({ x: cpuNorm, e: normError }, exact(f(1e-6)))), exact(f(maxNorm)));
  // min(c, 1) is 1-Lipschitz; the CPU's factor is `cpuScale`.
  return { normError, scaleError: c.e + Math.abs(Math.min(c.x, 1) - cpuScale) };
}

/**
 * One step of plain SGD (`p - lr * g`, the demo's baseline optimizer, demo/problems/sgd.ts) for the
 * bound: `errors` (per element, on the parameters before the step) is updated in place from the
 * values before the step.
 *
 * @example
 * ```ts
 * boundSgdStep(paramBefore, grad, 0.7, errors);
 * ```
 */
export function boundSgdStep(param: Float32Array, grad: Float32Array, lr: number, errors: Float64Array): void {
  const rate = exact(f(lr));
  for (let i = 0; i < param.length; i++) {
    errors[i] = add(input(param[i]!, errors[i]!), neg(mul(rate, input(grad[i]!, 0)))).e;
  }
}

/**
 * The bound on the GPU's dequantized 8-bit state (`map[code] * absmax`, one WGSL multiplication in
 * shaders/rmsprop.wgsl `stepBlockwise8`) when both sides hold the same codes and absmax: the GPU's
 * product within 1 ULP of the exact one (either neighbour), the CPU's within 0.5 (round to nearest),
 * and a flush to zero. `values` are the CPU's dequantized values (`dequantizeBlockwise`). A product
 * the rule reassociates (`alpha * (map * absmax)`) keeps the same relative bound (see the header).
 *
 * @example
 * ```ts
 * const start = dequantizeBounds(twinState.tensors[0].squareAvg); // the squareAvg bound before the step
 * ```
 */
export function dequantizeBounds(values: Float32Array): Float64Array {
  return Float64Array.from(values, (v) => mul(exact(v), exact(1)).e);
}

/** How far a conformant GPU's 8-bit state may be from the twin's after one step from a state both hold. */
export interface Blockwise8Bounds {
  /** Per block: |gpu absmax - cpu absmax| at most this (the max over the block of the bound on |v|). */
  readonly absmax: Float64Array;
  /** Per element: the twin's quotient x = f32(v / absmax), the value its quantizer coded. */
  readonly quotient: Float32Array;
  /** Per element: |the GPU's quotient - x| at most this (Infinity where the division is not bounded). */
  readonly quotientBound: Float64Array;
}

/**
 * The 8-bit state's bounds after one step, from the twin's new, unquantized mean square `v` (what the
 * step computed before requantizing), its bound `vBound` (from {@link boundStep}) and the twin's new
 * absmax per block of `blockSize`. The absmax is max |v| over the block on both sides (no rounding),
 * so it is within the block's largest bound on v. The quotient v / absmax is a WGSL division of two
 * inexact operands ({@link div}: what their errors do, 2.5 ULPs on the GPU, 0.5 on the CPU). The
 * shader's quantizer and the twin's give the same code for every f32 quotient (docs/blockwise8.md,
 * "The shader's quantizer") against the same f32 midpoints, so a GPU code may differ from the twin's
 * only where the quotients fall on either side of a midpoint: by one code, with the twin's quotient
 * within `quotientBound` of that midpoint (demo/check/compare.ts `compareCodes` checks exactly that).
 *
 * @example
 * ```ts
 * const b = blockwise8Bounds(out.squareAvg, bounds.squareAvg, after.absmax, BLOCK_SIZE);
 * ```
 */
export function blockwise8Bounds(
  v: Float32Array,
  vBound: ArrayLike<number>,
  absmax: Float32Array,
  blockSize: number,
): Blockwise8Bounds {
  const absmaxBound = new Float64Array(absmax.length);
  const quotient = new Float32Array(v.length), quotientBound = new Float64Array(v.length);
  for (let b = 0; b < absmax.length; b++) {
    const from = b * blockSize, to = Math.min(from + blockSize, v.length);
    let e = 0;
    for (let k = from; k < to; k++) e = Math.max(e, vBound[k]!);
    absmaxBound[b] = e;
    const scale: B = { x: absmax[b]!, e };
    for (let k = from; k < to; k++) {
      // The twin codes nothing in a block whose absmax is 0 (all zero codes); the GPU may not agree
      // there unless its absmax is exactly 0 too, which e = 0 says.
      if (absmax[b] === 0) {
        quotient[k] = 0;
        quotientBound[k] = e === 0 ? 0 : Infinity;
        continue;
      }
      const x = div({ x: v[k]!, e: vBound[k]! }, scale);
      quotient[k] = x.x;
      quotientBound[k] = x.e;
    }
  }
  return { absmax: absmaxBound, quotient, quotientBound };
}
