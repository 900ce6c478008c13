// The ULP metric the in-page checks rely on (test/browser/page/ulp.ts), checked in Node.
import { describe, expect, it } from 'vitest';
import { bitEqual, compareUlps, orderedBits, ulpDistance } from './page/ulp';

const bits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;

describe('ulpDistance', () => {
  it('counts representable f32 values between two numbers', () => {
    expect(ulpDistance(1, bits(0x3f80_0001))).toBe(1);
    expect(ulpDistance(1, bits(0x3f7f_ffff))).toBe(1); // below 1 the spacing halves: still one value apart
    expect(ulpDistance(1, 2)).toBe(0x0080_0000);
    expect(ulpDistance(-1, bits(0xbf80_0003))).toBe(3);
  });

  it('crosses zero: +0 and -0 are equal, the smallest subnormals are one step from zero', () => {
    expect(ulpDistance(0, -0)).toBe(0);
    expect(ulpDistance(bits(1), 0)).toBe(1);
    expect(ulpDistance(bits(1), bits(0x8000_0001))).toBe(2);
    expect(orderedBits(-0)).toBe(0);
  });

  it('tells NaN and infinities from numbers', () => {
    expect(ulpDistance(NaN, NaN)).toBe(0);
    expect(ulpDistance(NaN, 1)).toBe(Infinity);
    expect(ulpDistance(1, NaN)).toBe(Infinity);
    expect(ulpDistance(Infinity, Infinity)).toBe(0);
    expect(ulpDistance(Infinity, 3.4028234663852886e38)).toBe(Infinity); // FLT_MAX: one bit pattern away, not close
    expect(ulpDistance(Infinity, -Infinity)).toBe(Infinity);
    expect(ulpDistance(NaN, Infinity)).toBe(Infinity);
  });
});

describe('compareUlps and bitEqual', () => {
  it('finds the worst element', () => {
    const want = new Float32Array([1, 2, 3]);
    const got = new Float32Array([1, bits(0x4000_0002), 3]);
    expect(compareUlps(got, want)).toEqual({ maxUlps: 2, index: 1, got: got[1], want: 2 });
    expect(compareUlps(want, want.slice()).maxUlps).toBe(0);
    expect(compareUlps(new Float32Array(2), new Float32Array(3)).maxUlps).toBe(Infinity);
  });

  it('compares bit patterns, so -0 is not 0 and NaN equals the same NaN', () => {
    expect(bitEqual(new Float32Array([0]), new Float32Array([-0]))).toBe(false);
    expect(bitEqual(new Float32Array([NaN, 1]), new Float32Array([NaN, 1]))).toBe(true);
    expect(bitEqual(new Float32Array([1]), new Float32Array([1, 1]))).toBe(false);
  });
});
