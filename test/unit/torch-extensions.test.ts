/**
 * The CPU reference's extensions against real PyTorch 1.13 (test/fixtures/torch-extensions/, made by
 * test/fixtures/make_torch_fixtures.py):
 * - clipGradNorm against `torch.nn.utils.clip_grad_norm_(params, max_norm)` then `RMSprop.step()`;
 * - weightDecayMode 'decoupled' against `p.mul_(1 - lr * weight_decay)` (torch.optim.AdamW's form)
 *   then `RMSprop.step()`.
 *
 * Set RMSPROP_ULP_REPORT=1 to print the measured errors.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ReferenceRMSProp } from '../../src/rule/reference-optimizer.js';
import { gradNormStats } from '../../src/rule/reference.js';
import { ulp, ulpDistance } from './helpers/ulp.js';
import { loadTorchCases } from './helpers/torch-fixtures.js';

const cases = loadTorchCases('torch-extensions');

/**
 * Tolerances, measured (RMSPROP_ULP_REPORT=1), in ULPs of each element's running magnitude as in
 * torch.test.ts:
 *
 * - decoupled weight decay: 0, bit for bit. PyTorch rounds `1 - lr * wd` once to f32 (a Python
 *   double, cast for the f32 multiply), as `stepHyper` does; the multiply rounds once on both sides.
 * - clipGradNorm, the global norm: a few ULPs. PyTorch sums each tensor's squares in its own
 *   vectorised order, takes each tensor's norm (rounded), then the norm of those norms; the GPU (and
 *   `gradNormStats`, its twin) sums the squares of all tensors in workgroup trees. Same value, other
 *   roundings. Measured: at most 2 ULPs (1 on most steps, 0 on all-zero steps).
 * - clipGradNorm, the parameters and state: an ULP of the norm moves the clipping factor by about
 *   an ULP, and with it every clipped gradient; RMSProp's normalisation `g / sqrt(v)` cancels a
 *   common factor largely but not bit for bit, and momentum carries the difference on. Measured
 *   over the six fixtures (20 steps; 8 for the 2100-element one): parameters at most 15 ULPs,
 *   state at most 7, in ULPs of each element's running magnitude. The bounds below are those
 *   figures rounded up to powers of two. Steps whose factor is exactly 1 (not clipped) are
 *   bit-exact: the first step of the 1000-norm case checks that.
 */
const CLIP_NORM_ULPS = 2;
const CLIP_PARAM_ULPS = 16;
const CLIP_STATE_ULPS = 8;

const report: string[] = [];
afterAll(() => {
  if (process.env.RMSPROP_ULP_REPORT) console.log(['ULP errors vs PyTorch, extensions', ...report].join('\n'));
});

type Slot = 'squareAvg' | 'gradAvg' | 'momentumBuffer';
const slots: Slot[] = ['squareAvg', 'gradAvg', 'momentumBuffer'];

/** Worst error of `actual` vs `expected` in ULPs of max(|a|, |e|, scale[i]). */
function worstError(actual: Float32Array, expected: readonly number[], scale: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    const err = Math.abs(a - e) / ulp(Math.max(Math.abs(a), Math.abs(e), scale[i]!));
    if (!(err <= worst)) worst = err; // NaN lands here, and fails
  }
  return worst;
}

describe('CPU reference vs PyTorch: clip_grad_norm_ and decoupled weight decay', () => {
  it('has clipped and decoupled fixtures, with clipped and unclipped steps', () => {
    const clipped = cases.filter((c) => c.gradNorms);
    expect(clipped.length).toBeGreaterThanOrEqual(4);
    expect(cases.filter((c) => c.options.weightDecayMode === 'decoupled').length).toBeGreaterThanOrEqual(2);
    const norms = clipped.flatMap((c) => c.gradNorms!.map((n) => n / c.options.clipGradNorm));
    expect(norms.some((r) => r > 1)).toBe(true); // clipped steps
    expect(norms.some((r) => r > 0 && r < 1)).toBe(true); // unclipped, nonzero
    expect(norms.some((r) => r === 0)).toBe(true); // all-zero gradients
  });

  for (const c of cases) {
    it(c.name, async () => {
      const params = c.tensors.map((t) => Float32Array.from(t.initial));
      const grads = c.tensors.map((t) => new Float32Array(t.size));
      const opt = new ReferenceRMSProp(c.tensors.map((_, i) => ({ name: `t${i}`, param: params[i]!, grad: grads[i]! })), c.options);
      const scale = c.tensors.map((t) => Float32Array.from(t.initial, Math.abs));
      const stateScale = c.tensors.map((t) => Object.fromEntries(slots.map((k) => [k, new Float32Array(t.size)])) as Record<Slot, Float32Array>);
      let worstParam = 0, worstNorm = 0, worstUnclipped = 0;
      for (let s = 0; s < c.steps; s++) {
        if (c.lrPerStep) opt.lr = c.lrPerStep[s]!;
        c.tensors.forEach((t, i) => grads[i]!.set(t.grads[s]!));
        let clippedStep = false;
        if (c.gradNorms) {
          const norm = gradNormStats(grads, c.options.clipGradNorm).norm;
          const torchNorm = c.gradNorms[s]!;
          const e = torchNorm === 0 ? Math.abs(norm) : ulpDistance(norm, torchNorm);
          expect(e, `step ${s + 1}: norm ${norm} vs torch ${torchNorm}`).toBeLessThanOrEqual(CLIP_NORM_ULPS);
          worstNorm = Math.max(worstNorm, e);
          clippedStep = torchNorm + 1e-6 > c.options.clipGradNorm;
        }
        opt.step();
        const now = await opt.stateDict();
        now.tensors.forEach((t, i) => {
          for (const k of slots) {
            const x = t[k];
            if (x) for (let j = 0; j < x.length; j++) stateScale[i]![k][j] = Math.max(stateScale[i]![k][j]!, Math.abs(x[j]!));
          }
        });
        c.tensors.forEach((t, i) => {
          for (let k = 0; k < t.size; k++) scale[i]![k] = Math.max(scale[i]![k]!, Math.abs(params[i]![k]!));
          const e = worstError(params[i]!, t.params[s]!, scale[i]!);
          worstParam = Math.max(worstParam, e);
          if (!clippedStep && s === 0) worstUnclipped = Math.max(worstUnclipped, e);
          expect(e, `tensor ${i}, param after step ${s + 1}`).toBeLessThanOrEqual(c.gradNorms ? CLIP_PARAM_ULPS : 0);
        });
      }
      let worstState = 0;
      await opt.stateDict().then((state) => {
        c.tensors.forEach((t, i) => {
          for (const k of slots) {
            const ours = state.tensors[i]![k], theirs = t.state[k];
            expect(ours === undefined, `${k} presence`).toBe(theirs === undefined);
            if (!ours || !theirs) continue;
            const e = worstError(ours, theirs, stateScale[i]![k]);
            worstState = Math.max(worstState, e);
            expect(e, `tensor ${i}, final ${k}`).toBeLessThanOrEqual(c.gradNorms ? CLIP_STATE_ULPS : 0);
          }
        });
        // A first step that is not clipped sees no norm difference at all: bit-exact.
        expect(worstUnclipped).toBe(0);
        report.push(`${c.name.padEnd(50)} norm ${worstNorm} ULPs, param ${worstParam.toFixed(2)}, state ${worstState.toFixed(2)}`);
      });
    });
  }
});
