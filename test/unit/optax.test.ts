/**
 * Optax's arithmetic for `biasCorrection`, and a port of Optax's own test of it,
 * `test_rms_match_adam` (optax/_src/transform_test.py): `scale_by_rms(decay=0.999,
 * eps_in_sqrt=False, bias_correction=True)` equals `scale_by_adam(b1=0)` within chex's default
 * tolerance (rtol 1e-6, atol 0) after five steps of `p + update` on the gradient of sum(p²).
 * Optax computes the correction `1 - decay**count` in float32 from the float32 decay; in double
 * precision it is 1.3e-5 relative off at decay 0.999, which this test would catch.
 */
import { describe, expect, it } from 'vitest';
import { ReferenceRMSProp } from '../../src/rule/reference-optimizer.js';
import { stepHyper } from '../../src/rule/reference.js';
import { resolveOptions } from '../../src/rule/options.js';

const f = Math.fround;

/**
 * Optax `scale_by_adam(b1=0)` (eps 1e-8, eps_root 0) then `apply_updates` (p + u), in float32, written
 * from its definition: mu = (1 - b1) g + b1 mu; nu = (1 - b2) g² + b2 nu; mu_hat = mu / (1 - b1^t);
 * nu_hat = nu / (1 - b2^t), the corrections in float32 from the float32 b1, b2;
 * u = mu_hat / (sqrt(nu_hat + eps_root) + eps).
 * `correction` replaces Optax's float32 `1 - b2^t` (to show what a double-precision one would do).
 */
const optaxCorrection = (t: number) => f(1 - f(f(0.999) ** t));

function adamB1Zero(params: Float32Array[], steps: number, correction = optaxCorrection): Float32Array[] {
  const b1 = 0, b2 = 0.999, eps = 1e-8, epsRoot = 0;
  const p = params.map((x) => x.slice());
  const mu = p.map((x) => new Float32Array(x.length)), nu = p.map((x) => new Float32Array(x.length));
  for (let t = 1; t <= steps; t++) {
    p.forEach((x, k) => {
      for (let i = 0; i < x.length; i++) {
        const g = f(2 * x[i]!); // the gradient of sum(p²)
        // Python's 1 - b2 is a double, weakly typed: it meets the float32 array as f32(1 - b2).
        mu[k]![i] = f(f(f(1 - b1) * g) + f(f(b1) * mu[k]![i]!));
        nu[k]![i] = f(f(f(1 - b2) * f(g * g)) + f(f(b2) * nu[k]![i]!));
        const muHat = f(mu[k]![i]! / f(1 - f(f(b1) ** t)));
        const nuHat = f(nu[k]![i]! / correction(t));
        const u = f(muHat / f(f(Math.sqrt(f(nuHat + epsRoot))) + f(eps)));
        x[i] = f(x[i]! + u);
      }
    });
  }
  return p;
}

/** chex.assert_trees_all_close's default: |a - b| <= atol + rtol * |b|, rtol 1e-6, atol 0. The worst ratio to it. */
function closeness(actual: Float32Array[], expected: Float32Array[]): number {
  let worst = 0;
  actual.forEach((a, k) => a.forEach((x, i) => {
    const want = expected[k]![i]!;
    worst = Math.max(worst, Math.abs(x - want) / (1e-6 * Math.abs(want)));
  }));
  return worst;
}

describe('biasCorrection follows Optax\'s float32 arithmetic', () => {
  it('1 - alpha^t is computed in f32 from the f32 alpha, as Optax computes 1 - decay**count', () => {
    const o = resolveOptions({ alpha: 0.999, biasCorrection: true });
    for (const t of [1, 2, 10, 1000, 100_000]) {
      expect(stepHyper(o, { step: t }).biasCorrection, `t = ${t}`).toBe(f(1 - f(f(0.999) ** t)));
    }
    // In double precision it would be another number: 1.3e-5 relative at t = 1.
    const float32 = stepHyper(o, { step: 1 }).biasCorrection, float64 = f(1 - 0.999);
    expect(Math.abs(float32 - float64) / float64).toBeGreaterThan(1e-5);
  });

  it('test_rms_match_adam: RMSProp with bias correction (eps outside the root) is Adam with b1 = 0, within rtol 1e-6', () => {
    const initial = [new Float32Array([1, 2]), new Float32Array([3, 4])];
    const steps = 5;
    // p + u on the CPU reference: lr 1 and maximize turn p - lr * (-g) / den into p + g / den.
    const params = initial.map((x) => x.slice()), grads = initial.map((x) => new Float32Array(x.length));
    const rms = new ReferenceRMSProp(params.map((param, k) => ({ param, grad: grads[k]! })), {
      alpha: 0.999, eps: 1e-8, epsMode: 'outside', biasCorrection: true, lr: 1, maximize: true,
    });
    for (let s = 0; s < steps; s++) {
      params.forEach((p, k) => p.forEach((x, i) => { grads[k]![i] = f(2 * x); }));
      rms.step();
    }
    const adam = adamB1Zero(initial, steps);
    expect(adam[1]![1]).toBeGreaterThan(8); // it trained: p grew by about 1 per step (4 to 9)
    expect(closeness(params, adam)).toBeLessThanOrEqual(1);
    // And the test has teeth: Adam with a double-precision correction is outside the tolerance.
    expect(closeness(adamB1Zero(initial, steps, (t) => f(1 - 0.999 ** t)), adam)).toBeGreaterThan(1);
  });
});
