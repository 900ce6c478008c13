/**
 * The comparison itself, and where the tolerances come from. CPU only (no device).
 *
 * The hardware tolerance is the bound of demo/check/bound.ts, derived from WGSL's accuracy table
 * (docs/tolerance.md). It is not taken from any run; here it is *checked*:
 * - a simulation of the loosest rounding WGSL allows (loose-reference.ts: faithful + - *, 2.5-ULP
 *   division, sqrt through a 2-ULP inverseSqrt, fused or unfused multiply-adds, reassociation,
 *   flush to zero), over every variant and the variant tests' data, stays within the bound at every
 *   element of every parameter and state slot after every step;
 * - the bound is tight enough to mean something: a few ULPs where the rule is well-conditioned;
 * - errors of the rule (eps in the wrong place, lr in the other momentum form) land far outside
 *   it, and a constant off by one ULP lands outside the exact tolerance.
 */
import { describe, expect, test } from 'vitest';
import { createReferenceState, gradNormStats, resolveOptions, type RMSPropOptions, type ReferenceState } from '../../src/index.js';
import { stepHyper, stepResolved } from '../../src/rule/reference.js';
import { boundStep, normBound, zeroBounds } from '../../demo/check/bound.js';
import { compareTensor, ulpOf } from '../../demo/check/compare.js';
import { EXTENSIONS, VARIANT_SIZES, VARIANT_STEPS, VARIANTS, type Variant } from '../../demo/check/variants.js';
import { compareUlps, DEFAULT_FLOOR, randomGrads, randomParams, rng, ulpError } from './harness.js';
import { looseNorm, looseStep } from './loose-reference.js';

const nextUp = (x: number) => {
  const a = new Float32Array([x]);
  new Uint32Array(a.buffer)[0]! += 1;
  return a[0]!;
};

describe('ulpError', () => {
  test('counts f32 values between two numbers, across a power of 2 too', () => {
    expect(ulpError(1, 1)).toBe(0);
    expect(ulpError(nextUp(1), 1)).toBe(1);
    expect(ulpError(nextUp(nextUp(1)), 1)).toBe(2);
    expect(ulpError(Math.fround(1 - 2 ** -24), nextUp(1))).toBe(2); // the largest f32 below 1, then 1, then next
    expect(ulpError(-1, -nextUp(1))).toBe(1);
  });
  test('tells NaN from Infinity and from finite values; -0 equals 0', () => {
    expect(ulpError(NaN, NaN)).toBe(0);
    expect(ulpError(Infinity, Infinity)).toBe(0);
    expect(ulpError(NaN, Infinity)).toBe(Infinity);
    expect(ulpError(Infinity, -Infinity)).toBe(Infinity);
    expect(ulpError(NaN, 1)).toBe(Infinity);
    expect(ulpError(3.4e38, Infinity)).toBe(Infinity);
    expect(ulpError(-0, 0)).toBe(0);
  });
  test('below the floor, counts in ULPs of the floor', () => {
    // A subnormal flushed to 0 is allowed by WGSL, and not an error; FLT_MIN itself is 2^23 ULPs from 0.
    expect(ulpError(0, 1e-40)).toBe(0);
    expect(ulpError(0, 2 ** -126)).toBe(2 ** 23);
    expect(ulpError(2 ** -30, -(2 ** -30), 1)).toBeCloseTo(2 ** -29 / 2 ** -23, 10);
    expect(ulpError(1e-3, 1e-3 + 2 ** -23, 1)).toBeCloseTo(1, 5);
    expect(DEFAULT_FLOOR).toBe(2 ** -126);
  });
  test('compareUlps reports the worst element', () => {
    const cpu = new Float32Array([1, 2, 3, 4]);
    const gpu = new Float32Array([1, nextUp(2), nextUp(nextUp(3)), 4]);
    expect(compareUlps(gpu, cpu)).toEqual({ worst: 2, index: 2, gpu: gpu[2], cpu: 3, count: 4 });
    expect(compareUlps(cpu, cpu).worst).toBe(0);
  });
});

type Slot = 'squareAvg' | 'gradAvg' | 'momentumBuffer';
const SLOTS: Slot[] = ['squareAvg', 'gradAvg', 'momentumBuffer'];

/** One step of a run: parameters, gradient, state, the 0-based step and the clipping factor. */
type StepFunction = (p: Float32Array, g: Float32Array, s: ReferenceState, step: number, clip: number) => void;

interface Outcome {
  /** The largest |other - reference| / bound over every element, slot and step. */
  readonly boundUsed: number;
  /** The largest distance in ULPs, and where. */
  readonly worstUlps: number;
  readonly where: string;
  /** Per element, the bound in ULPs of the value, of the parameters at the last step (for its distribution). */
  readonly boundUlps: number[];
}

/**
 * Runs the reference over each variant's data (the variant tests' sizes, steps and gradients, three
 * seeds) beside `other` (another step function), carrying the WGSL bound of the reference's values,
 * and reports how `other` compares with the bound.
 */
function against(
  variants: readonly Variant[],
  other: (o: RMSPropOptions, seed: number) => StepFunction,
  looseClip = false,
): Outcome {
  let boundUsed = 0, worstUlps = 0, where = '';
  const boundUlps: number[] = [];
  for (const { name, options, gradScale = 1 } of variants) {
    const o = resolveOptions(options);
    for (const seed of [1, 2, 3]) {
      const random = rng(seed), normRandom = rng(seed * 31);
      const step = other(o, seed);
      for (const size of VARIANT_SIZES) {
        const p0 = randomParams(size, random);
        const [pa, pb] = [p0.slice(), p0.slice()];
        const [sa, sb] = [createReferenceState(size, o), createReferenceState(size, o)];
        const bounds = zeroBounds(size, o);
        for (let s = 0; s < VARIANT_STEPS; s++) {
          const g = randomGrads(size, random).map((x) => x * gradScale);
          const unscale = Math.fround(1 / o.lossScale);
          const stats = gradNormStats([g], o.clipGradNorm, 'fused', unscale);
          const { scaleError } = normBound([g], o.clipGradNorm, unscale, stats.norm, stats.scale);
          const hyper = stepHyper(o, { step: s + 1, gradScale: stats.scale });
          const pre = {
            param: pa.slice(), squareAvg: sa.squareAvg.slice(), gradAvg: sa.gradAvg?.slice(), momentumBuffer: sa.momentumBuffer?.slice(),
          };
          const mine = boundStep(pre, g, o, hyper, 'fused', scaleError, bounds);
          stepResolved(pa, g, sa, o, 'fused', hyper);
          // The bound's own run of the rule is the reference's, bit for bit.
          expect(compareTensor(mine.param, pa, undefined, 'exact').pass, `${name}: boundStep param`).toBe(true);
          expect(compareTensor(mine.squareAvg, sa.squareAvg, undefined, 'exact').pass, `${name}: boundStep v`).toBe(true);
          const clip = looseClip && o.clipGradNorm > 0
            ? looseNorm(normRandom, [g], o.clipGradNorm, unscale).scale
            : stats.scale;
          step(pb, g, sb, s, clip);
          type Pair = [Float32Array | undefined, Float32Array | undefined, Float64Array | undefined, string];
          const pairs: Pair[] = [[pb, pa, bounds.param, 'param'], ...SLOTS.map((slot): Pair => [sb[slot], sa[slot], bounds[slot], slot])];
          for (const [x, ref, b, slot] of pairs) {
            if (!x || !ref || !b) continue;
            const r = compareTensor(x, ref, b, 'bound');
            const at = `${name}, seed ${seed}, size ${size}, step ${s + 1}, ${slot}`;
            if (r.boundUsed > boundUsed) {
              boundUsed = r.boundUsed;
              const k = r.boundIndex;
              if (r.boundUsed > 1) where = `${at}[${k}]: ${x[k]} vs ${ref[k]}, bound ${b[k]}`;
            }
            if (r.worstUlps > worstUlps) {
              worstUlps = r.worstUlps;
              if (!where || boundUsed <= 1) where = `${at}[${r.index}]`;
            }
          }
          if (s === VARIANT_STEPS - 1) pa.forEach((x, i) => boundUlps.push(bounds.param[i]! / ulpOf(x)));
        }
      }
    }
  }
  return { boundUsed, worstUlps, where, boundUlps };
}

const loose = (o: RMSPropOptions, seed: number) => {
  const step = looseStep(rng(seed * 7919));
  return (p: Float32Array, g: Float32Array, s: ReferenceState, t: number, clip: number) =>
    step(p, g, s, o, stepHyper(o, { step: t + 1, gradScale: clip }));
};

/** The reference with other options: a rule error, or a constant off by one ULP. */
const foil = (change: (o: RMSPropOptions) => Partial<RMSPropOptions>) => (o: RMSPropOptions) => {
  const other = resolveOptions({ ...o, ...change(o) });
  return (p: Float32Array, g: Float32Array, s: ReferenceState, t: number, clip: number) =>
    stepResolved(p, g, s, other, 'fused', stepHyper(other, { step: t + 1, gradScale: clip }));
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function report(what: string, r: Outcome): void {
  if (!process.env.ULP_REPORT) return;
  console.info(`${what}, WGSL-loose vs reference: worst ${r.worstUlps} ULPs, at most ${(100 * r.boundUsed).toFixed(1)}% ` +
    `of the bound (${r.where}); median bound ${median(r.boundUlps).toFixed(1)} ULPs`);
}

describe('the WGSL bound (demo/check/bound.ts) against a simulation of WGSL\'s loosest rounding', () => {
  test('every variant of the base rule: every element of every parameter and state slot, every step, within the bound', () => {
    const r = against(VARIANTS, loose);
    report('base rule', r);
    expect(r.worstUlps, 'the simulation does round differently').toBeGreaterThan(0);
    expect(r.boundUsed, r.where).toBeLessThanOrEqual(1);
    // Not vacuous: the bound is a few ULPs for most elements (it grows only where the rule is ill-conditioned).
    expect(median(r.boundUlps)).toBeLessThan(64);
  });

  test('the extensions (Nesterov, decoupled decay, bias correction, clipping with a loose norm, loss scale): within the bound', () => {
    const r = against(EXTENSIONS, loose, true);
    report('extensions', r);
    expect(r.worstUlps).toBeGreaterThan(0);
    expect(r.boundUsed, r.where).toBeLessThanOrEqual(1);
  });

  test('the norm bound holds for the loosest reduction (any order, each rounding either way)', () => {
    let used = 0;
    for (const seed of [1, 2, 3, 4]) {
      const random = rng(seed);
      const grads = [randomGrads(5000, random), randomGrads(1031, random), randomGrads(3, random)];
      for (const maxNorm of [1, 1e9]) {
        const stats = gradNormStats(grads, maxNorm);
        const b = normBound(grads, maxNorm, 1, stats.norm, stats.scale);
        for (let k = 0; k < 5; k++) {
          const l = looseNorm(rng(seed * 100 + k), grads, maxNorm);
          const scaleUsed = b.scaleError > 0 ? Math.abs(l.scale - stats.scale) / b.scaleError : 0;
          used = Math.max(used, Math.abs(l.norm - stats.norm) / b.normError, scaleUsed);
        }
      }
    }
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThanOrEqual(1);
  });
});

describe('what each tolerance tells from correct rounding', () => {
  test('a constant off by 1 ULP is outside the exact tolerance', () => {
    const r = against(VARIANTS, foil((o) => ({ alpha: nextUp(o.alpha) })));
    expect(r.worstUlps, r.where).toBeGreaterThan(100);
  });

  test('a rule error (eps in the wrong place, lr in the other momentum form) is far outside the bound', () => {
    // Only the momentum variants differ in lrInMomentum; those alone must be caught.
    const momentum = VARIANTS.filter((v) => (v.options.momentum ?? 0) > 0);
    expect(against(momentum, foil((o) => ({ lrInMomentum: !o.lrInMomentum }))).boundUsed).toBeGreaterThan(100);
    const otherEps = foil((o) => ({ epsMode: o.epsMode === 'inside' ? 'outside' : 'inside' }));
    expect(against(VARIANTS, otherEps).boundUsed).toBeGreaterThan(100);
  });
});
