/**
 * Test data for the unit tests: seeded f32 values, and bit patterns to compare arrays exactly.
 */

/** Deterministic pseudo-random f32 values in (-scale, scale). */
export function values(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

/** Bit patterns, so that comparisons tell -0 from 0 and see every bit (NaN payloads included). */
export const bits = (x: Float32Array): number[] => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
