/**
 * Distances between f32 values in units in the last place (ULPs), on their bit patterns.
 */
const scratch = new DataView(new ArrayBuffer(4));

function bitsOf(x: number): number {
  scratch.setFloat32(0, x);
  return scratch.getUint32(0);
}

function fromBits(bits: number): number {
  scratch.setUint32(0, bits);
  return scratch.getFloat32(0);
}

/** The gap between |x| (rounded to f32) and the next f32 away from zero: 2^-149 for subnormals and zero. */
export function ulp(x: number): number {
  const a = Math.abs(Math.fround(x));
  if (!Number.isFinite(a)) return NaN;
  const bits = bitsOf(a);
  if (bits >= 0x7f7fffff) return a - fromBits(bits - 1); // the largest finite f32
  return fromBits(bits + 1) - a;
}

/**
 * The number of f32 values between a and b plus one (0 when equal; +0 and -0 are equal), counted
 * on the bit patterns mapped to a monotonic integer line. NaN if either is NaN.
 */
export function ulpDistance(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return NaN;
  const ordered = (x: number) => {
    const bits = bitsOf(x);
    return bits & 0x80000000 ? -(bits & 0x7fffffff) : bits;
  };
  return Math.abs(ordered(a) - ordered(b));
}
