/**
 * The CPU rule again, rounding as loosely as WGSL lets a GPU round: to derive the tolerance for
 * hardware adapters (HARDWARE_TOLERANCE_ULPS) without one. Same order of operations as
 * src/reference.ts and shaders/rmsprop.wgsl; only the rounding differs:
 * - `x / y` within 2.5 ULPs of the exact quotient: correctly rounded, then moved up to 2 ULPs;
 * - `sqrt` is 1 / inverseSqrt (2 ULPs, then a 2.5-ULP division): moved up to 4 ULPs;
 * - `a * b + c` may be fused into one rounding (f64 holds a * b of f32s exactly): at random.
 */
import type { ReferenceState, ResolvedOptions } from '../../src/index.js';
import { stepHyper, type StepHyper } from '../../src/reference.js';

const f = Math.fround;

/** A step function like `stepResolved`, drawing its rounding errors from `random`. */
export function looseStep(random: () => number) {
  const view = new DataView(new ArrayBuffer(4));
  const nudge = (x: number, most: number): number => {
    const n = Math.floor(random() * (2 * most + 1)) - most;
    if (n === 0 || x === 0 || !Number.isFinite(x)) return x;
    view.setFloat32(0, x);
    view.setUint32(0, view.getUint32(0) + n); // away from or towards 0: the same for either sign
    return view.getFloat32(0);
  };
  const div = (a: number, b: number) => nudge(f(a / b), 2);
  const sqrt = (a: number) => nudge(f(Math.sqrt(a)), 4);
  const fma = (a: number, b: number, c: number) => (random() < 0.5 ? f(a * b + c) : f(f(a * b) + c));

  // `hyper`: the per-step values (decoupled decay factor, bias correction, clipping factor), as stepResolved takes them.
  return (param: Float32Array, grad: Float32Array, state: ReferenceState, o: ResolvedOptions, hyper: StepHyper = stepHyper(o)): void => {
    const lr = f(o.lr), alpha = f(o.alpha), oneMinusAlpha = f(1 - o.alpha), eps = f(o.eps);
    const momentum = f(o.momentum), weightDecay = f(o.weightDecay);
    const { squareAvg: v, gradAvg: m, momentumBuffer: b } = state;
    const decoupled = o.weightDecay !== 0 && o.weightDecayMode === 'decoupled';
    for (let i = 0; i < param.length; i++) {
      let p = param[i]!;
      if (decoupled) p = f(p * hyper.decayFactor);
      let g = grad[i]!;
      if (o.clipGradNorm > 0) g = f(g * hyper.gradScale);
      if (o.maximize) g = -g;
      if (o.weightDecay !== 0 && !decoupled) g = fma(weightDecay, p, g);
      const vi = fma(alpha, v[i]!, f(f(oneMinusAlpha * g) * g));
      v[i] = vi;
      let d = o.biasCorrection ? div(vi, hyper.biasCorrection) : vi;
      if (m) {
        const mi = fma(alpha, m[i]!, f(oneMinusAlpha * g));
        m[i] = mi;
        const mh = o.biasCorrection ? div(mi, hyper.biasCorrection) : mi;
        d = Math.max(fma(-mh, mh, d), 0);
      }
      const den = o.epsMode === 'inside' ? sqrt(f(d + eps)) : f(sqrt(d) + eps);
      if (o.momentum > 0 && b) {
        if (o.lrInMomentum) {
          const u = div(f(lr * g), den);
          const bi = fma(momentum, b[i]!, u);
          b[i] = bi;
          param[i] = f(p - (o.nesterov ? fma(momentum, bi, u) : bi));
        } else {
          const q = div(g, den);
          const bi = fma(momentum, b[i]!, q);
          b[i] = bi;
          param[i] = fma(-lr, o.nesterov ? fma(momentum, bi, q) : bi, p);
        }
      } else {
        param[i] = f(p - div(f(lr * g), den));
      }
    }
  };
}
