/**
 * The 8-bit state's tolerance on adapters not measured exact (demo/check/compare.ts `compareCodes`,
 * demo/check/bound.ts `blockwise8Bounds`, CheckedReference's 8-bit steps), checked as tolerance.test.ts
 * checks the f32 bound. CPU only (no device):
 * - a simulation of the loosest rounding WGSL allows (loose-reference.ts), stepping 8-bit state as the
 *   shader does (dequantize with one multiplication, the rule, absmax, a 2.5-ULP division, the
 *   quantizer), passes the check page's comparison after every step of every 8-bit variant, with
 *   codes that do flip to a neighbour (so the neighbour rule is exercised, not vacuous);
 * - a quantizer that rounds to the wrong code, and an absmax that is not the block's max, fail it
 *   by orders of magnitude;
 * - compareCodes' rule on its own, and CheckedReference refusing to bound a second 8-bit step
 *   without a shared state.
 */
import { describe, expect, test } from 'vitest';
import {
  BLOCK_SIZE, DYNAMIC_MAP, quantizeCode, type RMSPropState,
} from '../../src/index.js';
import { DYNAMIC_MIDPOINTS } from '../../src/rule/blockwise8.js';
import { stepHyper } from '../../src/rule/reference.js';
import { CheckedReference, compareAll } from '../../demo/check/checked-reference.js';
import { compareCodes, toleranceFor } from '../../demo/check/compare.js';
import { VARIANT_STEPS } from '../../demo/check/variants.js';
import { BLOCKWISE8_VARIANTS } from '../../demo/check/verify.js';
import { randomGrads, randomParams, rng } from './harness.js';
import { looseArithmetic, looseNorm, looseStep } from './loose-reference.js';

const f = Math.fround;
const BOUND = toleranceFor('a GPU nobody measured');

/** How a simulated GPU codes a block: the quotients v / absmax (loosely divided) to codes. */
type Coder = (quotient: number) => number;

/** One 8-bit tensor's state on the simulated GPU. */
interface Loose8 { codes: Uint8Array; absmax: Float32Array }

/**
 * A GPU that rounds as loosely as WGSL allows, with 8-bit state as shaders/rmsprop.wgsl stores it
 * (`code` picks each code; `absmaxOf` each block's absmax from its new v).
 */
function looseGpu(
  state: RMSPropState,
  params: Float32Array[],
  random: () => number,
  code: Coder = quantizeCode,
  absmaxOf: (v: Float32Array) => number = (v) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0),
) {
  const arithmetic = looseArithmetic(random);
  const step = looseStep(random);
  const o = state.groups[0]!.options;
  const small = state.tensors.map((t) => (t.codes ? undefined : t.squareAvg.slice()));
  const q8: (Loose8 | undefined)[] = state.tensors.map((t) =>
    (t.codes ? { codes: t.codes.slice(), absmax: t.absmax!.slice() } : undefined));
  let steps = state.step, skipped = state.skippedSteps ?? 0;
  return {
    step(grads: Float32Array[]) {
      steps++;
      if (o.skipNonFinite && grads.some((g) => g.some((x) => !Number.isFinite(x)))) { skipped++; return; }
      const scale = o.clipGradNorm > 0 ? looseNorm(random, grads, o.clipGradNorm, f(1 / o.lossScale)).scale : 1;
      const hyper = stepHyper(o, { step: steps, gradScale: scale });
      params.forEach((p, i) => {
        const s = q8[i];
        if (!s) { step(p, grads[i]!, { size: p.length, squareAvg: small[i]! }, o, hyper); return; }
        for (let b = 0; b < s.absmax.length; b++) {
          const from = b * BLOCK_SIZE, to = Math.min(from + BLOCK_SIZE, p.length);
          const v = Float32Array.from(
            { length: to - from }, (_, k) => arithmetic.mul(DYNAMIC_MAP[s.codes[from + k]!]!, s.absmax[b]!),
          );
          step(p.subarray(from, to), grads[i]!.subarray(from, to), { size: to - from, squareAvg: v }, o, hyper);
          const absmax = absmaxOf(v);
          s.absmax[b] = absmax;
          v.forEach((x, k) => { s.codes[from + k] = absmax > 0 ? code(arithmetic.div(x, absmax)) : 127; });
        }
      });
    },
    async readParams() { return params.map((p) => p.slice()); },
    async stateDict(): Promise<RMSPropState> {
      return {
        ...state, step: steps, skippedSteps: skipped,
        tensors: state.tensors.map((t, i) => {
          const s = q8[i];
          if (!s) return { ...t, squareAvg: small[i]!.slice() };
          const squareAvg = Float32Array.from(
            { length: t.size }, (_, k) => f(DYNAMIC_MAP[s.codes[k]!]! * s.absmax[Math.floor(k / BLOCK_SIZE)]!),
          );
          return { ...t, codes: s.codes.slice(), absmax: s.absmax.slice(), squareAvg };
        }),
      };
    },
  };
}

interface Run { worstUsed: number; where: string; flips: number; codesUsed: number; failures: string[] }

/** A run's figures in one line (ULP_REPORT=1). */
const describeRun = (r: Run) => `${r.flips} code flips (their quotients at most ${(100 * r.codesUsed).toFixed(1)}% ` +
  `of the bound from the midpoint), at most ${(100 * r.worstUsed).toFixed(1)}% of the bound (${r.where})`;

/**
 * Gradients whose first step (from a zero state) puts the twin's quotients v / absmax within a few
 * ULPs of the midpoints: per block, one gradient of 1 (the absmax), the others sqrt(midpoint) for
 * each midpoint above 0 in turn, so that (1 - alpha) g² / absmax lands on it but for rounding.
 */
function onMidpoints(n: number): Float32Array {
  const g = new Float32Array(n);
  for (let k = 0; k < n; k++) g[k] = k % BLOCK_SIZE === 0 ? 1 : Math.sqrt(DYNAMIC_MIDPOINTS[127 + (k % 128)]!);
  return g;
}

/**
 * The check page's 8-bit variants (or `variants`), three seeds, their steps: the simulated GPU
 * against the twin at the bound, with the page's random gradients (or `grads`).
 */
async function simulate(
  code?: Coder,
  absmaxOf?: (v: Float32Array) => number,
  { variants = BLOCKWISE8_VARIANTS, grads = randomGrads, steps = VARIANT_STEPS, seeds = [1, 2, 3] }: {
    variants?: typeof BLOCKWISE8_VARIANTS; grads?: (n: number, random: () => number) => Float32Array;
    steps?: number; seeds?: number[];
  } = {},
): Promise<Run> {
  const run: Run = { worstUsed: 0, where: '', flips: 0, codesUsed: 0, failures: [] };
  for (const v of variants) {
    for (const seed of seeds) {
      const random = rng(seed);
      const sizes = v.sizes!;
      const specs = sizes.map((n, i) => ({ name: `t${i}`, param: randomParams(n, random), grad: new Float32Array(n) }));
      const twin = new CheckedReference(specs, v.options, { multiplyAdd: 'fused' });
      const gpu = looseGpu(await twin.stateDict(), specs.map((s) => s.param.slice()), rng(seed * 7919), code, absmaxOf);
      for (let s = 0; s < steps; s++) {
        specs.forEach((t, i) => {
          t.grad.set(grads(t.param.length, random));
          if (i === 0 && s + 1 === v.nonFiniteStep) t.grad[7] = NaN;
        });
        gpu.step(specs.map((t) => t.grad.slice()));
        twin.step();
        const [gp, cp, gs, cs, bounds] = await Promise.all([
          gpu.readParams(), twin.readParams(), gpu.stateDict(), twin.stateDict(), twin.bounds(),
        ]);
        const r = compareAll(gp, cp, gs, cs, bounds, BOUND);
        for (const { what, result } of r.tensors) {
          const at = `${v.name}, seed ${seed}, step ${s + 1}, ${what}`;
          if (!result.pass) run.failures.push(at);
          if (result.boundUsed > run.worstUsed) { run.worstUsed = result.boundUsed; run.where = at; }
          if (what.endsWith('.codes')) {
            if (result.boundUsed > run.codesUsed) run.codesUsed = result.boundUsed;
            const t = gs.tensors.find((x) => what.startsWith(`'${x.name}'`))!;
            const c = cs.tensors.find((x) => x.name === t.name)!;
            run.flips += t.codes!.reduce((n, x, k) => n + (x !== c.codes![k] ? 1 : 0), 0);
          }
        }
        specs.forEach((t, i) => t.param.set(gp[i]!));
        twin.loadStateDict(gs);
      }
    }
  }
  return run;
}

describe('8-bit state at the WGSL bound: a simulation of WGSL\'s loosest rounding', () => {
  test('passes after every step of every 8-bit variant: parameters, codes and absmax', async () => {
    const run = await simulate();
    if (process.env.ULP_REPORT) console.info(`8-bit, WGSL-loose: ${describeRun(run)}`);
    expect(run.failures).toEqual([]);
    expect(run.worstUsed, run.where).toBeLessThanOrEqual(1);
    expect(run.worstUsed, 'not vacuous: parameters do differ').toBeGreaterThan(0);
  }, 120_000);

  test('quotients on the midpoints: codes flip to a neighbour, within the bound', async () => {
    const run = await simulate(undefined, undefined, {
      variants: BLOCKWISE8_VARIANTS.slice(0, 1), grads: onMidpoints, steps: 1, seeds: [1, 2, 3, 4, 5, 6, 7, 8],
    });
    if (process.env.ULP_REPORT) console.info(`8-bit on midpoints: ${describeRun(run)}`);
    expect(run.failures).toEqual([]);
    expect(run.flips, 'the simulation lands on the other side of a midpoint').toBeGreaterThan(0);
    expect(run.worstUsed, run.where).toBeLessThanOrEqual(1);
  }, 120_000);

  test('a quantizer that takes the lower code (no midpoint comparison) fails by orders of magnitude', async () => {
    const lower = (x: number) => { let c = quantizeCode(x); if (c > 0 && DYNAMIC_MAP[c]! > x) c--; return c; };
    const run = await simulate(lower);
    expect(run.failures.length).toBeGreaterThan(0);
    expect(run.worstUsed).toBeGreaterThan(100);
  }, 120_000);

  test('an absmax that is not the block\'s max (the mean of |v|) fails', async () => {
    const run = await simulate(undefined, (v) => v.reduce((m, x) => m + Math.abs(x), 0) / v.length);
    expect(run.failures.some((w) => w.endsWith('.absmax'))).toBe(true);
    expect(run.worstUsed).toBeGreaterThan(100);
  }, 120_000);
});

describe('compareCodes', () => {
  const bounds = (quotient: number[], bound: number[]) =>
    ({ quotient: new Float32Array(quotient), quotientBound: bound });
  const codes = (gpu: number[], cpu: number[], b: ReturnType<typeof bounds> | undefined, kind: 'exact' | 'bound') =>
    compareCodes(new Uint8Array(gpu), new Uint8Array(cpu), b, DYNAMIC_MIDPOINTS, kind);
  const mid = DYNAMIC_MIDPOINTS[200]!;
  const near = f(mid * (1 + 2 ** -22)), far = DYNAMIC_MAP[200]!;

  test('exact: any code that differs fails; equal codes pass', () => {
    expect(codes([1, 2], [1, 2], undefined, 'exact').pass).toBe(true);
    const r = codes([1, 201], [1, 200], bounds([0, near], [0, 1]), 'exact');
    expect([r.pass, r.worstUlps, r.index, r.gpu, r.cpu]).toEqual([false, 1, 1, 201, 200]);
  });

  test('bound: a neighbour passes only where the twin\'s quotient is within its bound of their midpoint', () => {
    const u = 2 ** -23;
    const pass = codes([201], [200], bounds([near], [4 * u]), 'bound');
    expect(pass.pass).toBe(true);
    expect(pass.boundUsed).toBeGreaterThan(0);
    expect(pass.boundUsed).toBeLessThanOrEqual(1);
    // The same neighbour with the quotient on the map value itself, far from the midpoint.
    const off = codes([201], [200], bounds([far], [4 * u]), 'bound');
    expect(off.pass).toBe(false);
    expect(off.boundUsed).toBeGreaterThan(1000);
    // Two codes apart: never, however close to a midpoint.
    const two = codes([202], [200], bounds([near], [4 * u]), 'bound');
    expect([two.pass, two.worstUlps]).toEqual([false, 2]);
    // No bound (no step since the state was shared): equal codes only, whichever the tolerance.
    expect(codes([201], [200], undefined, 'bound').pass).toBe(false);
    // An infinite bound allows any code (as compareTensor's).
    expect(codes([9], [200], bounds([near], [Infinity]), 'bound').pass).toBe(true);
  });
});

describe('CheckedReference with 8-bit state', () => {
  test('bounds one step from a shared state, and refuses a second one without it', async () => {
    const random = rng(4);
    const specs = [{ name: 'w', param: randomParams(4096, random), grad: randomGrads(4096, random) }];
    const twin = new CheckedReference(specs, { stateDtype: 'int8-blockwise' });
    twin.step();
    const b = await twin.bounds();
    expect(b!.state[0]!.blockwise8!.absmax.length).toBe(16);
    expect(b!.state[0]!.blockwise8!.quotientBound.every((x) => x > 0 && x < 1e-5)).toBe(true);
    twin.step();
    await expect(twin.bounds()).rejects.toThrow(/8-bit state.*loadStateDict/);
    const again = new CheckedReference(specs, { stateDtype: 'int8-blockwise' });
    again.step();
    again.loadStateDict(await again.stateDict());
    again.step();
    expect((await again.bounds())!.state[0]!.blockwise8).toBeDefined();
  });

  test('the quotients it bounds are those the twin coded', async () => {
    const random = rng(5);
    const specs = [{ name: 'w', param: randomParams(5000, random), grad: randomGrads(5000, random) }];
    const twin = new CheckedReference(specs, { stateDtype: 'int8-blockwise', clipGradNorm: 1 });
    twin.step();
    const [state, bounds] = await Promise.all([twin.stateDict(), twin.bounds()]);
    expect(Array.from(bounds!.state[0]!.blockwise8!.quotient, (x) => quantizeCode(x)))
      .toEqual(Array.from(state.tensors[0]!.codes!));
  });
});
