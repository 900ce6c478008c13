/**
 * The CPU rule again, rounding as loosely as WGSL lets a GPU round: one conformant implementation
 * that no GPU at hand is, to check the bound of demo/check/bound.ts (which is derived, not taken
 * from here: tolerance.test.ts checks that this simulation stays inside it, and that rule errors
 * fall far outside it). Same order of operations as src/rule/reference.ts and shaders/rmsprop.wgsl;
 * what WGSL permits (§15.7.2, §15.7.4.1, §15.7.5), drawn at random and often at its extreme:
 * - `+`, `-`, `*`: either neighbour of the exact result (WGSL's "correctly rounded");
 * - `x / y`: any f32 within 2.5 ULP of the exact quotient;
 * - `sqrt(x)`: `1 / inverseSqrt(x)`, inverseSqrt any f32 within 2 ULP, then such a division;
 * - `a * b + c` (fma or not): one rounding or two;
 * - reassociation: `(lr * g) / den` as `lr * (g / den)`, `(oneMinusAlpha * g) * g` as
 *   `oneMinusAlpha * (g * g)`, Nesterov's `p - (u + momentum * b)` as `(p - u) - momentum * b`;
 * - flush to zero of subnormal results.
 * An exact 0 quotient stays 0 (0 / y, and sqrt(0) = 1 / inverseSqrt(0) = 0), as on every implementation.
 */
import type { ReferenceState, ResolvedOptions } from '../../src/index.js';
import { stepHyper } from '../../src/rule/reference.js';
import { ulpOf } from '../../demo/check/compare.js';

const f = Math.fround;
const FLT_MIN = 2 ** -126;

/** Loose f32 arithmetic drawing its choices from `random`. */
export function looseArithmetic(random: () => number) {
  const view = new DataView(new ArrayBuffer(4));
  const step = (x: number, n: number): number => {
    if (n === 0 || !Number.isFinite(x)) return x;
    if (x === 0) return n > 0 ? 2 ** -149 : -(2 ** -149);
    view.setFloat32(0, x);
    const towardsZero = (n < 0) === (x > 0);
    view.setUint32(0, view.getUint32(0) + (towardsZero ? -Math.abs(n) : Math.abs(n)));
    return view.getFloat32(0);
  };
  const flush = (x: number) => (Math.abs(x) < FLT_MIN && random() < 0.5 ? 0 : x);
  /** Either neighbour of the exact value `exact` (a double standing for it). */
  const faithful = (exact: number): number => {
    const r = f(exact);
    if (r === exact || !Number.isFinite(r) || random() < 0.5) return flush(r);
    return flush(step(r, exact > r ? 1 : -1));
  };
  /** Any f32 within `ulps` ULP of `exact`, the farthest one half of the time. */
  const within = (exact: number, ulps: number): number => {
    // An exact zero stays zero: the ULP allowance around 0 would reach a tiny negative subnormal,
    // whose sqrt is NaN, but every implementation divides 0 to exactly 0 (see docs/tolerance.md).
    if (exact === 0) return 0;
    const r = f(exact), ulp = ulpOf(exact);
    const allowed: number[] = [];
    for (let n = -Math.ceil(ulps) - 1; n <= Math.ceil(ulps) + 1; n++) {
      const y = step(r, n);
      if (Math.abs(y - exact) <= ulps * ulp) allowed.push(y);
    }
    if (allowed.length === 0) return flush(r);
    const extreme = random() < 0.5 ? allowed[0]! : allowed[allowed.length - 1]!;
    const pick = random() < 0.5 ? extreme : allowed[Math.floor(random() * allowed.length)]!;
    return flush(pick);
  };
  const add = (a: number, b: number) => faithful(a + b);
  const mul = (a: number, b: number) => faithful(a * b);
  const div = (a: number, b: number) => within(a / b, 2.5);
  const sqrt = (a: number) => (a === 0 ? 0 : div(1, within(1 / Math.sqrt(a), 2)));
  const fma = (a: number, b: number, c: number) => (random() < 0.5 ? faithful(a * b + c) : add(mul(a, b), c));
  return { add, mul, div, sqrt, fma, coin: () => random() < 0.5 };
}

/** A step function like `stepResolved`, drawing its rounding from `random`. */
export function looseStep(random: () => number) {
  const { add, mul, div, sqrt, fma, coin } = looseArithmetic(random);
  // `hyper`: the per-step values (decoupled decay factor, bias correction, clipping factor), as stepResolved takes them.
  return (param: Float32Array, grad: Float32Array, state: ReferenceState, o: ResolvedOptions, hyper = stepHyper(o)): void => {
    const lr = f(o.lr), alpha = f(o.alpha), oneMinusAlpha = f(1 - o.alpha), eps = f(o.eps);
    const momentum = f(o.momentum), weightDecay = f(o.weightDecay);
    const { squareAvg: v, gradAvg: m, momentumBuffer: b } = state;
    const decoupled = o.weightDecay !== 0 && o.weightDecayMode === 'decoupled';
    const lrTimes = (g: number, den: number) => (coin() ? div(mul(lr, g), den) : mul(lr, div(g, den)));
    for (let i = 0; i < param.length; i++) {
      let p = param[i]!;
      if (decoupled) p = mul(p, hyper.decayFactor);
      let g = grad[i]!;
      if (o.lossScale !== 1) g = mul(g, hyper.unscale);
      if (o.clipGradNorm > 0) g = mul(g, hyper.gradScale);
      if (o.maximize) g = -g;
      if (o.weightDecay !== 0 && !decoupled) g = fma(p, weightDecay, g);
      const square = coin() ? mul(mul(oneMinusAlpha, g), g) : mul(oneMinusAlpha, mul(g, g));
      const vi = coin() ? fma(mul(oneMinusAlpha, g), g, mul(alpha, v[i]!)) : add(square, mul(alpha, v[i]!));
      v[i] = vi;
      let d = o.biasCorrection ? div(vi, hyper.biasCorrection) : vi;
      if (m) {
        const mi = fma(g, oneMinusAlpha, mul(alpha, m[i]!));
        m[i] = mi;
        const mh = o.biasCorrection ? div(mi, hyper.biasCorrection) : mi;
        d = Math.max(fma(-mh, mh, d), 0);
      }
      const den = o.epsMode === 'inside' ? sqrt(add(d, eps)) : add(sqrt(d), eps);
      if (o.momentum > 0 && b) {
        if (o.lrInMomentum) {
          const u = lrTimes(g, den);
          const bi = fma(momentum, b[i]!, u);
          b[i] = bi;
          if (o.nesterov) param[i] = coin() ? add(p, -add(u, mul(momentum, bi))) : add(add(p, -u), -mul(momentum, bi));
          else param[i] = add(p, -bi);
        } else {
          const q = div(g, den);
          const bi = fma(momentum, b[i]!, q);
          b[i] = bi;
          param[i] = fma(-lr, o.nesterov ? fma(momentum, bi, q) : bi, p);
        }
      } else {
        param[i] = add(p, -lrTimes(g, den));
      }
    }
  };
}

/**
 * The global norm and clipping factor as loosely as WGSL allows (grad-norm.wgsl's sums in a random
 * order, each rounding either way, then sqrt, `+ 1e-6`, `1 / x`, `* maxNorm`).
 */
export function looseNorm(
  random: () => number,
  grads: readonly Float32Array[],
  maxNorm: number,
  unscale = 1,
): { norm: number; scale: number } {
  const { add, mul, div, sqrt } = looseArithmetic(random);
  const squares: number[] = [];
  for (const g of grads) for (const x of g) { const y = unscale === 1 ? x : mul(x, unscale); squares.push(mul(y, y)); }
  for (let i = squares.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [squares[i], squares[j]] = [squares[j]!, squares[i]!];
  }
  // A tree, as the GPU's workgroups sum (the shuffle stands for any order within the tree's depth).
  let level = squares;
  while (level.length > 1) {
    const next: number[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? add(level[i]!, level[i + 1]!) : level[i]!);
    level = next;
  }
  const norm = sqrt(level[0] ?? 0);
  if (!(maxNorm > 0)) return { norm, scale: 1 };
  const c = mul(div(1, add(norm, f(1e-6))), f(maxNorm));
  return { norm, scale: c >= 1 ? 1 : c };
}
