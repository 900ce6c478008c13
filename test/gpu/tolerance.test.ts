/**
 * The comparison itself: `ulpError` on known values, and where the tolerances come from.
 * CPU only (no device): the hardware tolerance is derived by simulating WGSL's allowed rounding.
 */
import { describe, expect, test } from 'vitest';
import { createReferenceState, resolveOptions, type RMSPropOptions } from '../../src/index.js';
import { stepResolved } from '../../src/reference.js';
import { compareUlps, DEFAULT_FLOOR, HARDWARE_TOLERANCE_ULPS, randomGrads, randomParams, rng, SWIFTSHADER_TOLERANCE_ULPS, ulpError } from './harness.js';
import { looseStep } from './loose-reference.js';
import { VARIANT_SIZES, VARIANT_STEPS, VARIANTS } from './twin.js';

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
    // Opposite signs, or cancellation products, in ULPs of the larger operand scale.
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

/**
 * The worst error, with the twin's floors, of `other` against the reference over the variant tests'
 * data (sizes, steps, gradients): each variant from three seeds.
 */
function worstOver(make: (o: RMSPropOptions, seed: number) => (p: Float32Array, g: Float32Array, s: ReturnType<typeof createReferenceState>) => void): { worst: number; where: string } {
  let worst = 0, where = '';
  const raise = (scale: Float32Array, x: Float32Array) => x.forEach((v, i) => { scale[i] = Math.max(scale[i]!, Math.abs(v)); });
  for (const { name, options } of VARIANTS) {
    const o = resolveOptions(options);
    for (const seed of [1, 2, 3]) {
      const random = rng(seed);
      for (const size of VARIANT_SIZES) {
        const p0 = randomParams(size, random);
        const [pa, pb] = [p0.slice(), p0.slice()];
        const [sa, sb] = [createReferenceState(size, o), createReferenceState(size, o)];
        const other = make(o, seed);
        const scales = { p: p0.map(Math.abs), v: new Float32Array(size), m: new Float32Array(size), b: new Float32Array(size) };
        for (let s = 0; s < VARIANT_STEPS; s++) {
          const g = randomGrads(size, random);
          stepResolved(pa, g, sa, o);
          other(pb, g, sb);
          const pairs: [Float32Array | undefined, Float32Array | undefined, Float32Array, string][] = [
            [pb, pa, scales.p, 'param'], [sb.squareAvg, sa.squareAvg, scales.v, 'squareAvg'],
            [sb.gradAvg, sa.gradAvg, scales.m, 'gradAvg'], [sb.momentumBuffer, sa.momentumBuffer, scales.b, 'momentumBuffer'],
          ];
          for (const [x, ref, scale, slot] of pairs) {
            if (!x || !ref) continue;
            raise(scale, ref);
            const r = compareUlps(x, ref, scale);
            if (r.worst > worst) { worst = r.worst; where = `${name}, seed ${seed}, size ${size}, step ${s + 1}, ${slot}[${r.index}]`; }
          }
        }
      }
    }
  }
  return { worst, where };
}

describe('tolerances', () => {
  test(`rounding as loosely as WGSL allows stays within HARDWARE_TOLERANCE_ULPS (${HARDWARE_TOLERANCE_ULPS})`, () => {
    const { worst, where } = worstOver((o, seed) => {
      const step = looseStep(rng(seed * 7919));
      return (p, g, s) => step(p, g, s, o);
    });
    if (process.env.ULP_REPORT) console.info(`WGSL-loose rounding vs the reference: worst ${worst} ULPs (${where})`);
    expect(worst, where).toBeGreaterThan(SWIFTSHADER_TOLERANCE_ULPS); // the simulation does round differently
    expect(worst, where).toBeLessThanOrEqual(HARDWARE_TOLERANCE_ULPS);
  });

  // What each tolerance can tell from correct rounding. SwiftShader's (0) catches any change at all,
  // down to a constant off by 1 ULP; the hardware one catches changes of the rule, not of constants'
  // last bits, which are as small as what WGSL's rounding may do.
  test('a constant off by 1 ULP is outside the SwiftShader tolerance', () => {
    const alphaOff = worstOver((o) => (p, g, s) => stepResolved(p, g, s, { ...o, alpha: nextUp(o.alpha) }));
    expect(alphaOff.worst, alphaOff.where).toBeGreaterThan(SWIFTSHADER_TOLERANCE_ULPS + 100);
  });

  test('a rule error (eps in the wrong place, lr in the other momentum form) is far outside the hardware tolerance', () => {
    const lrSwapped = worstOver((o) => (p, g, s) => stepResolved(p, g, s, { ...o, lrInMomentum: !o.lrInMomentum }));
    // Only the momentum variants differ; those alone must be caught.
    expect(lrSwapped.worst, lrSwapped.where).toBeGreaterThan(100 * HARDWARE_TOLERANCE_ULPS);
    const epsSwapped = worstOver((o) => (p, g, s) => stepResolved(p, g, s, { ...o, epsMode: o.epsMode === 'inside' ? 'outside' : 'inside' }));
    expect(epsSwapped.worst, epsSwapped.where).toBeGreaterThan(100 * HARDWARE_TOLERANCE_ULPS);
  });
});
