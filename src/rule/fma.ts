/**
 * fmaf: a*b + c on f32 values with one rounding, as a fused multiply-add (JS has no Math.fma).
 * The CPU reference uses it wherever PyTorch's CPU kernels and the WGSL shader use a fused
 * multiply-add, so all three round alike.
 *
 * a*b is exact in a double (24 + 24 bits <= 53); the sum is not, and rounding it to a double and
 * then to f32 could round twice the wrong way. So the double sum is rounded to odd (its last bit
 * set when inexact, from TwoSum's exact error), which makes the final rounding to f32 correct:
 * 53 bits >= 24 + 2.
 */
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LOW = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1; // little-endian: low word first

/** `a*b + c` for f32 `a`, `b`, `c`, rounded once to f32. */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  if (!Number.isFinite(s)) return Math.fround(s);
  const bv = s - p;
  const err = (p - (s - bv)) + (c - bv); // exact: p + c = s + err
  if (err === 0) return Math.fround(s);
  f64[0] = s;
  if ((u32[LOW]! & 1) === 0) {
    // s is even: the exact sum lies strictly between s and its neighbour towards err, which is odd.
    const HIGH = 1 - LOW;
    if ((err > 0) === (s > 0)) {
      u32[LOW] = u32[LOW]! + 1;
      if (u32[LOW] === 0) u32[HIGH] = u32[HIGH]! + 1;
    } else {
      if (u32[LOW] === 0) u32[HIGH] = u32[HIGH]! - 1;
      u32[LOW] = u32[LOW]! - 1;
    }
  }
  return Math.fround(f64[0]!);
}
