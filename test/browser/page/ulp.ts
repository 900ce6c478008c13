/**
 * Distances between f32 values in ULPs (units in the last place), on their bit patterns: the
 * number of representable f32 values from one to the other. Pure functions, used in the page and
 * tested in Node (test/browser/ulp.test.ts).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The f32 bit pattern of `x` (rounded to f32) as an integer that orders like the values: -0 and +0 both map to 0. */
export function orderedBits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  return bits >= 0x8000_0000 ? 0x8000_0000 - bits : bits; // -0 (0x80000000) maps to +0
}

/**
 * ULPs between two f32 values. Equal values (including +0 and -0, and two infinities of the same
 * sign) are 0 apart; NaN and NaN are 0 apart; NaN or an infinity against anything else is Infinity,
 * so that a NaN or an overflow never passes as "close".
 */
export function ulpDistance(a: number, b: number): number {
  const aNaN = Number.isNaN(a), bNaN = Number.isNaN(b);
  if (aNaN || bNaN) return aNaN && bNaN ? 0 : Infinity;
  if (a === b) return 0;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
  return Math.abs(orderedBits(a) - orderedBits(b));
}

/** The worst element of a comparison. */
export interface UlpReport {
  /** Largest distance over the arrays (Infinity if their lengths differ). */
  readonly maxUlps: number;
  /** Where it is, -1 if the arrays are equal. */
  readonly index: number;
  readonly got: number;
  readonly want: number;
}

/** Compares `got` to `want` element by element, in ULPs. */
export function compareUlps(got: Float32Array, want: Float32Array): UlpReport {
  if (got.length !== want.length) return { maxUlps: Infinity, index: -1, got: got.length, want: want.length };
  let maxUlps = 0, index = -1;
  for (let i = 0; i < got.length; i++) {
    const d = ulpDistance(got[i]!, want[i]!);
    if (d > maxUlps) {
      maxUlps = d;
      index = i;
    }
  }
  return { maxUlps, index, got: index >= 0 ? got[index]! : NaN, want: index >= 0 ? want[index]! : NaN };
}

/** True when both arrays hold the same bit patterns (NaN payloads and the sign of zero included). */
export function bitEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
