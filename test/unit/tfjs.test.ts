/**
 * The CPU reference against TF.js 4.22's `tf.train.rmsprop`, live, on the CPU backend: the same
 * gradients into both, parameters compared after every step, state at the end.
 *
 * TF.js's rule is ours with epsMode 'inside' and lrInMomentum true (presets.tfjs), except:
 * - it computes the mean square's new term as `square(g) * (1 - decay)`; the reference (PyTorch's
 *   order) as `((1 - alpha) * g) * g`: the same value rounded differently, about 1/2 ULP of v;
 * - it always keeps a momentum buffer; with momentum 0 it is `0 * b + u`, exactly `u`;
 * - centered, it takes `sqrt(v - (m^2 + eps))`, where the rule (and this library) has `sqrt(v - m^2 + eps)`.
 * Every TF.js CPU kernel rounds each operation to f32, so a model in TF.js's order (tfjsOrderStep)
 * reproduces it bit for bit, which shows the differences above are the only ones.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presets, type RMSPropOptions } from '../../src/rule/options.js';
import { createReferenceState, referenceStep, type ReferenceState } from '../../src/rule/reference.js';
import { ulp, ulpDistance } from './helpers/ulp.js';
import { mulberry32 } from '../../demo/problems/random.js';

/**
 * Tolerances in ULPs, per element, of the largest magnitude that element has held so far (see
 * torch.test.ts for why errors are measured against that floor): the measured maxima of the cases
 * below over 20 steps (print them with RMSPROP_ULP_REPORT=1). The two orders of the mean square's
 * new term differ by up to 1/2 ULP of v per step, accumulating in v while it decays after a large
 * gradient (6 ULPs); the step lr*g/sqrt(v+eps) sees half of v's relative error, which momentum
 * accumulates (7 ULPs of the parameter at 0.9, 1 without momentum; 8 centered, where v - m^2
 * cancels and so magnifies v's relative error: 8.5, since src/rule/reference.ts rounds PyTorch's fused
 * multiply-adds once and TF.js rounds every product). The momentum buffer: at most 2.
 */
const PARAM_ULPS = 9;
const STATE_ULPS = 6;

const f = Math.fround;

beforeAll(async () => {
  tf.env().set('IS_TEST', true); // silences the 'install tfjs-node' banner
  await tf.setBackend('cpu');
  await tf.ready();
});

const rng = mulberry32;

/** Gradients log-uniform in [10^lo, 10^hi], random signs, with ~5% exact zeros. */
function gradients(random: () => number, size: number, steps: number, lo = -3, hi = 3): Float32Array[] {
  return Array.from({ length: steps }, () => Float32Array.from({ length: size }, () =>
    random() < 0.05 ? 0 : (random() < 0.5 ? -1 : 1) * 10 ** (lo + (hi - lo) * random())));
}

let nextId = 0;

/** Runs tf.train.rmsprop over one tensor; returns the parameter after each step and the final state. */
async function runTfjs(initial: Float32Array, grads: Float32Array[], o: RMSPropOptions) {
  const name = `rmsprop_test_${nextId++}`;
  const variable = tf.variable(tf.tensor1d(initial), true, name);
  const optimizer = tf.train.rmsprop(o.lr, o.alpha, o.momentum, o.eps, o.centered);
  const params: Float32Array[] = [];
  for (const g of grads) {
    const grad = tf.tensor1d(g);
    optimizer.applyGradients({ [name]: grad });
    grad.dispose();
    params.push(variable.dataSync() as Float32Array);
  }
  // getWeights(): [iterations, rms..., momentum..., mg... (centered)], one of each per variable.
  const weights = await optimizer.getWeights();
  const state = Object.fromEntries(weights.slice(1).map((w) => [w.name.slice(name.length + 1), w.tensor.dataSync() as Float32Array]));
  optimizer.dispose();
  variable.dispose();
  return { params, state: { squareAvg: state.rms!, momentumBuffer: state.momentum!, gradAvg: state.mg } };
}

/** The reference's trajectory over the same data, with the running max |p| of every element. */
type Step = (param: Float32Array, grad: Float32Array, state: ReferenceState, o: RMSPropOptions) => void;

function runReference(initial: Float32Array, grads: Float32Array[], o: RMSPropOptions, step: Step = referenceStep) {
  const param = initial.slice();
  const state = createReferenceState(param.length, { ...o, momentum: o.momentum || 1 }); // always a buffer, as TF.js
  const scale = initial.map(Math.abs), bScale = new Float32Array(param.length);
  const params: Float32Array[] = [], scales: Float32Array[] = [];
  for (const g of grads) {
    step(param, g, state, o); // referenceStep ignores the buffer when momentum is 0
    param.forEach((x, i) => { scale[i] = Math.max(scale[i]!, Math.abs(x)); });
    state.momentumBuffer!.forEach((x, i) => { bScale[i] = Math.max(bScale[i]!, Math.abs(x)); });
    params.push(param.slice());
    scales.push(scale.slice());
  }
  return { params, scales, state, bScale };
}

/** Worst error of `actual` vs `expected`, in ULPs of max(|a|, |e|, scale) per element, and raw. */
function error(actual: Float32Array, expected: Float32Array, scale?: Float32Array) {
  let scaled = 0, raw = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    const err = Math.abs(a - e) / ulp(Math.max(Math.abs(a), Math.abs(e), scale?.[i] ?? 0));
    scaled = err > scaled || Number.isNaN(err) ? err : scaled;
    raw = Math.max(raw, ulpDistance(a, e));
  }
  return { scaled, raw };
}

/**
 * TF.js 4.22's rmsprop_optimizer.js in its own order, with its centered formula. `b` is always
 * present (with momentum 0 it holds the last update).
 */
function tfjsOrderStep(param: Float32Array, grad: Float32Array, state: ReferenceState, o: RMSPropOptions): void {
  const lr = f(o.lr), decay = f(o.alpha), oneMinusDecay = f(1 - o.alpha), eps = f(o.eps), momentum = f(o.momentum);
  const { squareAvg: v, gradAvg: m, momentumBuffer: b } = state;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    v[i] = f(f(v[i]! * decay) + f(f(g * g) * oneMinusDecay)); // add(mul(v, decay), mul(square(g), 1 - decay))
    let den: number;
    if (m) {
      m[i] = f(f(m[i]! * decay) + f(g * oneMinusDecay));
      den = f(Math.sqrt(f(v[i]! - f(f(m[i]! * m[i]!) + eps)))); // sqrt(sub(v, add(square(m), eps)))
    } else {
      den = f(Math.sqrt(f(v[i]! + eps)));
    }
    b![i] = f(f(b![i]! * momentum) + f(f(g * lr) / den));
    param[i] = f(param[i]! - b![i]!);
  }
}

describe('CPU reference vs TF.js 4.22 tf.train.rmsprop', () => {
  const report: string[] = [];

  describe.each([
    { momentum: 0, size: 37, seed: 1 },
    { momentum: 0.9, size: 37, seed: 2 },
    { momentum: 0, size: 1000, seed: 3 },
    { momentum: 0.9, size: 1000, seed: 4 },
  ])('momentum $momentum, $size elements', ({ momentum, size, seed }) => {
    const o: RMSPropOptions = { ...presets.tfjs, lr: 0.01, momentum };
    const random = rng(seed);
    const initial = Float32Array.from({ length: size }, () => (random() - 0.5) * 20);
    const grads = gradients(random, size, 20);

    it(`matches within ${PARAM_ULPS} ULP every step, and the mean square within ${STATE_ULPS}`, async () => {
      const theirs = await runTfjs(initial, grads, o);
      const ours = runReference(initial, grads, o);
      let worstParam = 0, worstRaw = 0;
      theirs.params.forEach((p, s) => {
        const e = error(ours.params[s]!, p, ours.scales[s]);
        expect(e.scaled, `step ${s + 1}`).toBeLessThanOrEqual(PARAM_ULPS);
        worstParam = Math.max(worstParam, e.scaled);
        worstRaw = Math.max(worstRaw, e.raw);
      });
      const v = error(ours.state.squareAvg, theirs.state.squareAvg);
      expect(v.scaled).toBeLessThanOrEqual(STATE_ULPS);
      const b = momentum > 0 ? error(ours.state.momentumBuffer!, theirs.state.momentumBuffer, ours.bScale) : { scaled: 0, raw: 0 };
      expect(b.scaled).toBeLessThanOrEqual(STATE_ULPS);
      report.push(`momentum ${momentum}, size ${size}: param ${worstParam.toFixed(2)} (raw ${worstRaw}), squareAvg ${v.scaled.toFixed(2)} (raw ${v.raw}), momentumBuffer ${b.scaled.toFixed(2)} (raw ${b.raw})`);
    });

    it('equals TF.js bit for bit once the mean square is rounded in TF.js\'s order', async () => {
      const theirs = await runTfjs(initial, grads, o);
      const model = runReference(initial, grads, o, tfjsOrderStep);
      model.params.forEach((p, s) => expect(p, `step ${s + 1}`).toEqual(theirs.params[s]));
      expect(model.state.squareAvg).toEqual(theirs.state.squareAvg);
      expect(model.state.momentumBuffer).toEqual(theirs.state.momentumBuffer);
    });
  });

  describe('centered (TF.js 4.22 computes sqrt(v - (m^2 + eps)), not sqrt(v - m^2 + eps))', () => {
    it('agrees with our centered rule, within the tolerance above, when eps is below half an ULP of m^2 and of v - m^2', async () => {
      // Gradients of magnitude 0.1..10 with random signs keep v - m^2 >= ~1e-4, whose ULP is
      // ~1e-11; eps = 1e-13 then vanishes in both sums and the two formulas round identically.
      const random = rng(5);
      const o: RMSPropOptions = { ...presets.tfjs, lr: 0.01, centered: true, momentum: 0.9, eps: 1e-13 };
      const initial = Float32Array.from({ length: 64 }, () => random() - 0.5);
      const grads = gradients(random, 64, 20, -1, 1).map((g) => g.map((x) => x || 1)); // no zeros: v - m^2 > 0
      const theirs = await runTfjs(initial, grads, o);
      const ours = runReference(initial, grads, o);
      let worst = 0;
      theirs.params.forEach((p, s) => {
        const e = error(ours.params[s]!, p, ours.scales[s]).scaled;
        expect(e, `step ${s + 1}`).toBeLessThanOrEqual(PARAM_ULPS);
        worst = Math.max(worst, e);
      });
      // m (bit-equal today: both round alpha*m and (1-alpha)*g separately) against the ULP of
      // sqrt(v), its bound (|m| <= sqrt(v)), as m cancels towards 0 between gradients of both signs.
      const m = error(ours.state.gradAvg!, theirs.state.gradAvg!, ours.state.squareAvg.map(Math.sqrt));
      expect(m.scaled).toBeLessThanOrEqual(STATE_ULPS);
      report.push(`centered, eps negligible: param ${worst.toFixed(2)}, gradAvg ${m.scaled.toFixed(2)} (raw ${m.raw})`);
    });

    it('gives NaN where v - m^2 < eps, where the rule adds eps and stays finite', async () => {
      // Tiny gradients (1e-6..1e-5): the variance v - m^2 (~1e-11) is far below eps = 1e-7.
      const random = rng(6);
      const o: RMSPropOptions = { ...presets.tfjs, lr: 0.01, centered: true, momentum: 0 };
      const initial = Float32Array.from({ length: 16 }, () => random() - 0.5);
      const grads = gradients(random, 16, 3, -6, -5);
      const theirs = await runTfjs(initial, grads, o);
      const ours = runReference(initial, grads, o);
      expect(theirs.params[0]!.every(Number.isNaN)).toBe(true);
      expect(ours.params.every((p) => p.every(Number.isFinite))).toBe(true);
      // ... and TF.js is exactly its own formula: the NaNs come from that subtraction, nothing else.
      const model = runReference(initial, grads, o, tfjsOrderStep);
      model.params.forEach((p, s) => expect(p).toEqual(theirs.params[s]));
    });
  });

  afterAll(() => {
    if (process.env.RMSPROP_ULP_REPORT) console.log(['ULP errors vs TF.js', ...report].join('\n'));
  });
});
