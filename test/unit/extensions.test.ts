/**
 * The reference's extensions (Nesterov, decoupled weight decay, bias correction, the gradient
 * pre-pass) against independently written oracles of each framework's formula, in double
 * precision; and their option checks.
 */
import { describe, expect, it } from 'vitest';
import { ReferenceRMSProp } from '../../src/rule/reference-optimizer.js';
import { createReferenceState, gradNormStats, referenceStep } from '../../src/rule/reference.js';
import { resolveOptions, type RMSPropOptions } from '../../src/rule/options.js';
import { bf16ToF32, decodeHalves, encodeHalves, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/rule/half.js';
import { packedChunkElements, packedTail, planChunks } from '../../src/gpu/plan.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Well-conditioned data: |g| in [0.1, 1], no zeros, so that f32 stays close to the f64 oracle. */
function data(n: number, steps: number, seed: number): { p: Float32Array; g: Float32Array[] } {
  const r = lcg(seed);
  const p = Float32Array.from({ length: n }, () => r() * 2 - 1);
  const g = Array.from({ length: steps }, () => Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (0.1 + 0.9 * r())));
  return { p, g };
}

/**
 * Optax's `rmsprop(learning_rate, decay, eps, initial_scale, eps_in_sqrt, centered, momentum,
 * nesterov, bias_correction)` written from its definition: scale_by_rms / scale_by_stddev (with
 * count and bias correction), scale_by_learning_rate, then trace(decay=momentum, nesterov).
 * Also PyTorch's form (lr outside the buffer, nesterov as torch.optim.SGD) and AdamW's decay.
 */
function oracle(p0: Float32Array, grads: Float32Array[], o: RMSPropOptions): Float64Array {
  const p = Float64Array.from(p0);
  const n = p.length;
  const nu = new Float64Array(n).fill(o.initialScale), mu = new Float64Array(n), trace = new Float64Array(n);
  grads.forEach((g32, s) => {
    const count = s + 1;
    for (let i = 0; i < n; i++) {
      if (o.weightDecayMode === 'decoupled') p[i] = p[i]! * (1 - o.lr * o.weightDecay);
      const g = g32[i]! * (o.maximize ? -1 : 1);
      nu[i] = (1 - o.alpha) * g * g + o.alpha * nu[i]!;
      mu[i] = (1 - o.alpha) * g + o.alpha * mu[i]!;
      const c = o.biasCorrection ? 1 - o.alpha ** count : 1;
      const nuHat = nu[i]! / c, muHat = mu[i]! / c;
      const variance = o.centered ? nuHat - muHat * muHat : nuHat;
      const scaled = g / (o.epsMode === 'inside' ? Math.sqrt(variance + o.eps) : Math.sqrt(variance) + o.eps);
      if (o.momentum === 0) {
        p[i] = p[i]! - o.lr * scaled;
      } else if (o.lrInMomentum) {
        // Optax: updates = -lr * scaled; new_trace = updates + m * trace; nesterov: updates + m * new_trace.
        const u = -o.lr * scaled;
        trace[i] = u + o.momentum * trace[i]!;
        p[i] = p[i]! + (o.nesterov ? u + o.momentum * trace[i]! : trace[i]!);
      } else {
        // PyTorch: buf = m * buf + scaled; nesterov: step along scaled + m * buf; p -= lr * step.
        trace[i] = o.momentum * trace[i]! + scaled;
        p[i] = p[i]! - o.lr * (o.nesterov ? scaled + o.momentum * trace[i]! : trace[i]!);
      }
    }
  });
  return p;
}

const CASES: [string, Partial<RMSPropOptions>][] = [
  ['Optax nesterov (lr in the trace, eps inside)', { alpha: 0.9, epsMode: 'inside', momentum: 0.9, lrInMomentum: true, nesterov: true, lr: 1e-3 }],
  ['Optax nesterov, centered', { alpha: 0.9, epsMode: 'inside', momentum: 0.9, lrInMomentum: true, nesterov: true, centered: true, lr: 1e-3 }],
  ['PyTorch-form nesterov', { momentum: 0.9, nesterov: true }],
  ['PyTorch-form nesterov, centered', { momentum: 0.5, nesterov: true, centered: true }],
  ['Optax bias_correction', { alpha: 0.9, epsMode: 'inside', biasCorrection: true, lr: 1e-3 }],
  // Centered with bias correction from zeros has variance exactly 0 at step 1 (nu_hat = g*g, mu_hat = g):
  // the result is rounding noise over sqrt(eps) in any precision, so this case starts nu at 1.
  ['Optax bias_correction, centered, momentum', { alpha: 0.9, epsMode: 'inside', biasCorrection: true, centered: true, momentum: 0.9, lrInMomentum: true, lr: 1e-3, initialScale: 1 }],
  ['Optax bias_correction, initial_scale 1', { alpha: 0.9, epsMode: 'inside', biasCorrection: true, initialScale: 1, lr: 1e-3 }],
  ['AdamW-style decoupled weight decay', { weightDecay: 0.1, weightDecayMode: 'decoupled', lr: 0.05 }],
  ['decoupled, with momentum and maximize', { weightDecay: 0.01, weightDecayMode: 'decoupled', momentum: 0.9, maximize: true }],
];

/**
 * How far the f32 reference may drift from the f64 oracle after 12 steps, relative to the
 * parameter's magnitude (at least 1): measured at most 3.6e-7 on these cases (RMSPROP_ULP_REPORT=1
 * prints each), a few times f32's epsilon 1.2e-7.
 */
const RELATIVE = 2e-6;

describe('extensions against f64 oracles of the framework formulas', () => {
  CASES.forEach(([name, options], c) => {
    it(name, () => {
      const o = resolveOptions(options);
      const { p, g } = data(41, 12, 100 + c);
      const expected = oracle(p, g, o);
      const param = p.slice(), grad = new Float32Array(p.length);
      const opt = new ReferenceRMSProp([{ param, grad }], options);
      for (const gs of g) { grad.set(gs); opt.step(); }
      let worst = 0;
      for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(param[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
      if (process.env.RMSPROP_ULP_REPORT) console.log(`${name}: ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(RELATIVE);
      // Each option changes the result (the oracle without it lands elsewhere).
      const off = oracle(p, g, resolveOptions({ ...options, nesterov: false, biasCorrection: false, weightDecayMode: 'l2', weightDecay: 0 }));
      let moved = 0;
      for (let i = 0; i < p.length; i++) moved = Math.max(moved, Math.abs(off[i]! - expected[i]!));
      expect(moved).toBeGreaterThan(100 * RELATIVE);
    });
  });

  it('referenceStep takes the step number for bias correction, and insists on it', () => {
    const { p, g } = data(9, 3, 7);
    const o = { alpha: 0.9, biasCorrection: true };
    const a = p.slice(), b = p.slice();
    const sa = createReferenceState(9, o);
    g.forEach((gs, s) => referenceStep(a, gs, sa, o, 'fused', { step: s + 1 }));
    const grad = new Float32Array(9);
    const opt = new ReferenceRMSProp([{ param: b, grad }], o);
    for (const gs of g) { grad.set(gs); opt.step(); }
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(() => referenceStep(a, g[0]!, sa, o)).toThrow(/step must be the 1-based step number/);
  });
});

describe('gradNormStats (the twin of shaders/grad-norm.wgsl)', () => {
  it('is the global L2 norm, within f32 rounding of the f64 sum', () => {
    const r = lcg(3);
    for (const sizes of [[1], [3], [4], [1023, 1025], [5000, 7, 300000]]) {
      const grads = sizes.map((n) => Float32Array.from({ length: n }, () => (r() - 0.5) * 10 ** (r() * 4 - 2)));
      let sum = 0;
      for (const g of grads) for (const x of g) sum += x * x;
      const { norm, nonFinite, scale } = gradNormStats(grads, 0);
      expect(nonFinite).toBe(false);
      expect(scale).toBe(1);
      expect(Math.abs(norm - Math.sqrt(sum)) / Math.sqrt(sum)).toBeLessThan(1e-6);
      for (const multiplyAdd of ['fused', 'separate'] as const) {
        expect(Math.abs(gradNormStats(grads, 0, multiplyAdd).norm - Math.sqrt(sum)) / Math.sqrt(sum)).toBeLessThan(1e-6);
      }
    }
  });

  it('the clipping factor is PyTorch clip_grad_norm_: min(1, maxNorm / (norm + 1e-6)) in f32', () => {
    const grads = [new Float32Array([3, 4])]; // norm 5
    expect(gradNormStats(grads, 1).norm).toBe(5);
    expect(gradNormStats(grads, 1).scale).toBe(Math.fround(Math.fround(1 / Math.fround(5 + Math.fround(1e-6))) * 1));
    expect(Math.abs(gradNormStats(grads, 1).scale - 0.2)).toBeLessThan(1e-7);
    expect(gradNormStats(grads, 5).scale).toBeLessThanOrEqual(1);
    expect(gradNormStats(grads, 6).scale).toBe(1);
    expect(gradNormStats([new Float32Array(8)], 1).scale).toBe(1); // all zeros: 1e6 clamped
  });

  it('finds one NaN or ±Inf anywhere, the last element of the last tensor included', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const [t, at] of [[0, 0], [1, 2], [1, 1024], [2, 2]] as const) {
        const grads = [new Float32Array(5), new Float32Array(1027), new Float32Array(3)];
        grads[t]![at] = bad;
        expect(gradNormStats(grads, 0).nonFinite, `${bad} at [${t}][${at}]`).toBe(true);
      }
    }
    expect(gradNormStats([new Float32Array([3.4e38, 3.4e38])], 0).nonFinite).toBe(false); // squares overflow; the values are finite
  });

  it('a sum of squares at or past 2^126 saturates: norm +Infinity, factor exactly 0, skipped only when clipping', () => {
    const justBelow = Math.fround(2 ** 62 * (1 - 2 ** -20)); // its square is below 2^124: summed
    for (const grads of [
      [new Float32Array([3.4e38, 1])], // one element whose square alone overflows
      [new Float32Array([2 ** 62])], // flagged on its bits: |g| >= 2^62
      [Float32Array.from({ length: 16 }, () => justBelow)], // each square finite, the sum past 2^126
    ]) {
      const clipped = gradNormStats(grads, 1);
      expect(clipped).toEqual({ nonFinite: false, overflow: true, skip: true, norm: Infinity, scale: 0 });
      const unclipped = gradNormStats(grads, 0);
      expect(unclipped).toEqual({ nonFinite: false, overflow: true, skip: false, norm: Infinity, scale: 1 });
    }
    const fine = gradNormStats([new Float32Array([justBelow])], 1);
    expect(fine.overflow).toBe(false);
    expect(fine.norm).toBe(justBelow);
    // The threshold follows the loss scale: the norm is of g / lossScale.
    expect(gradNormStats([new Float32Array([2 ** 62])], 1, 'fused', 2 ** -10).overflow).toBe(false);
    expect(gradNormStats([new Float32Array([2 ** 52])], 1, 'fused', 2 ** 10).overflow).toBe(true);
  });

  it('NaN wins over Infinity: a NaN norm and factor, as PyTorch\'s clip_grad_norm_ gives', () => {
    const stats = gradNormStats([new Float32Array([Infinity, NaN, 1e30])], 1);
    expect(stats.nonFinite && stats.skip).toBe(true);
    expect(stats.norm).toBeNaN();
    expect(stats.scale).toBeNaN();
    const inf = gradNormStats([new Float32Array([-Infinity, 1])], 1);
    expect([inf.norm, inf.scale]).toEqual([Infinity, 0]);
  });

  it('ReferenceRMSProp with skipNonFinite leaves everything unchanged and counts the skip', async () => {
    const param = new Float32Array([1, 2, 3, 4, 5]), grad = new Float32Array([0.1, 0.2, 0.3, 0.4, NaN]);
    const opt = new ReferenceRMSProp([{ param, grad }], { skipNonFinite: true, momentum: 0.9 });
    opt.step();
    expect(Array.from(param)).toEqual([1, 2, 3, 4, 5]);
    expect(await opt.skippedSteps()).toBe(1);
    expect(opt.stepCount).toBe(1);
    expect((await opt.stateDict()).skippedSteps).toBe(1);
    grad[4] = 0.5;
    opt.step();
    expect(param[0]).not.toBe(1);
    expect(await opt.skippedSteps()).toBe(1);
  });
});

describe('option checks', () => {
  const rejects = (options: Record<string, unknown>, type: typeof TypeError | typeof RangeError, pattern: RegExp) => {
    expect(() => resolveOptions(options as Partial<RMSPropOptions>)).toThrow(type);
    expect(() => resolveOptions(options as Partial<RMSPropOptions>)).toThrow(pattern);
  };
  it('names the option and the fix', () => {
    rejects({ nesterov: true }, RangeError, /nesterov needs momentum > 0/);
    rejects({ nesterov: 'yes' }, TypeError, /nesterov must be true or false/);
    rejects({ weightDecayMode: 'adamw' }, TypeError, /weightDecayMode must be 'l2' .* or 'decoupled'/);
    rejects({ biasCorrection: 1 }, TypeError, /biasCorrection must be true or false/);
    rejects({ biasCorrection: true, alpha: 1 }, RangeError, /needs alpha < 1/);
    rejects({ biasCorrection: true, skipNonFinite: true }, RangeError, /cannot be combined with skipNonFinite/);
    rejects({ skipNonFinite: 'true' }, TypeError, /skipNonFinite must be true or false/);
    rejects({ clipGradNorm: -1 }, RangeError, /clipGradNorm must be 0 \(off\) or a maximum gradient norm/);
    rejects({ clipGradNorm: 1e-40 }, RangeError, /clipGradNorm must be 0 \(off\) or a maximum gradient norm >= 2\^-126/);
    rejects({ clipGradNorm: Infinity }, RangeError, /clipGradNorm/);
    rejects({ clipGradNorm: '1' }, TypeError, /clipGradNorm must be a number/);
    rejects({ max_norm: 1 }, TypeError, /calls it 'clipGradNorm'/);
    rejects({ bias_correction: true }, TypeError, /calls it 'biasCorrection'/);
  });
  it('skipNonFinite and clipGradNorm are optimizer-wide: a param group may not set them', () => {
    const spec = () => ({ param: new Float32Array(2), grad: new Float32Array(2) });
    expect(() => new ReferenceRMSProp([{ params: [spec()] }, { params: [spec()], clipGradNorm: 1 }])).toThrow(/params\[1\]\.clipGradNorm is optimizer-wide/);
    expect(() => new ReferenceRMSProp([{ params: [spec()], skipNonFinite: true }])).toThrow(TypeError);
    // The same value as the optimizer's is fine.
    expect(() => new ReferenceRMSProp([{ params: [spec()], skipNonFinite: true }], { skipNonFinite: true })).not.toThrow();
  });
});

describe('16-bit floats (src/rule/half.ts)', () => {
  it('f16: every pattern decodes exactly and encodes back to itself (NaNs to the quiet NaN)', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = f16ToF32(h);
      if (Number.isNaN(x)) { expect((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0).toBe(true); expect(f32ToF16(x)).toBe(0x7e00); continue; }
      expect(Math.fround(x)).toBe(x); // an f32
      expect(f32ToF16(x), `0x${h.toString(16)}`).toBe(h);
    }
    expect([f16ToF32(0x3c00), f16ToF32(0xc000), f16ToF32(0x7bff), f16ToF32(0x0001), f16ToF32(0x7c00)]).toEqual([1, -2, 65504, 2 ** -24, Infinity]);
  });

  it('f16: rounds to nearest, ties to even; past 65520 to Infinity', () => {
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // a tie: to even (1)
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // a tie: to even (1 + 2^-9)
    expect(f32ToF16(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    expect(f32ToF16(65519.99)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00);
    expect(f32ToF16(-1e9)).toBe(0xfc00);
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // half the smallest subnormal: a tie, to even (0)
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002);
    expect(f32ToF16(-0)).toBe(0x8000);
  });

  it('bf16: the high half of an f32, rounded to nearest even', () => {
    for (let b = 0; b < 0x10000; b += 7) {
      const x = bf16ToF32(b);
      if (!Number.isNaN(x)) expect(f32ToBf16(x)).toBe(b);
    }
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(Math.fround(1 + 2 ** -8))).toBe(0x3f80); // a tie: to even
    expect(f32ToBf16(Math.fround(1 + 3 * 2 ** -8))).toBe(0x3f82);
    expect(f32ToBf16(NaN)).toBe(0x7fc0);
    const values = new Float32Array([0.5, -3, 1e-3]);
    expect(Array.from(decodeHalves(encodeHalves(values, 'bf16'), 'bf16', new Float32Array(3)))).toEqual([0.5, -3, Math.fround(bf16ToF32(f32ToBf16(1e-3)))]);
  });

  it('16-bit chunks start at 256-byte offsets, tails in one word', () => {
    expect(packedChunkElements(1000)).toBe(896);
    expect(() => packedChunkElements(64)).toThrow(RangeError);
    const [chunk] = planChunks(1030, 1 << 20);
    expect(packedTail(chunk!)).toEqual({ bindingOffset: 2048, start: 2 }); // 257 vec4s = 2056 bytes of halves: word 2 past 2048
  });
});
