/**
 * 16-bit floats (IEEE f16 and bfloat16) as the bit patterns that gradients in `gradDtype: 'f16' |
 * 'bf16'` buffers and parameters in `paramDtype: 'f16' | 'bf16'` buffers hold, two per u32 (element
 * 2k in the low half of word k). Decoding is exact, and the shaders decode with bit operations, so
 * the GPU and these functions agree bit for bit. Encoding rounds to nearest, ties to even; values
 * past the largest finite value become ±Infinity; the shaders' encodeWord rounds the same way.
 */

const scratch = new DataView(new ArrayBuffer(4));

/**
 * The f32 value of an f16 bit pattern (exact: every f16 is an f32).
 *
 * @example
 * ```ts
 * f16ToF32(0x3c00); // 1
 * ```
 */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * The f32 value of a bfloat16 bit pattern (exact: the high half of an f32).
 *
 * @example
 * ```ts
 * bf16ToF32(0x3f80); // 1
 * ```
 */
export function bf16ToF32(b: number): number {
  scratch.setUint32(0, (b & 0xffff) << 16);
  return scratch.getFloat32(0);
}

/**
 * The f16 bit pattern nearest to `x` (ties to even; overflow to ±Infinity; NaN to 0x7e00).
 *
 * @example
 * ```ts
 * f32ToF16(1); // 0x3c00
 * ```
 */
export function f32ToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65504 + half an ULP (2^4 / 2 * ... ) rounds to Infinity
  if (a < 2 ** -14) {
    // Subnormal (or zero): a multiple of 2^-24, rounded to nearest even.
    return sign | roundHalfEven(a * 2 ** 24);
  }
  let exponent = Math.floor(Math.log2(a));
  if (2 ** exponent > a) exponent--; // guard log2's rounding
  if (2 ** (exponent + 1) <= a) exponent++;
  const mantissa = roundHalfEven((a / 2 ** exponent - 1) * 1024);
  // A mantissa rounded up to 1024 carries into the exponent: the bit pattern sum does it.
  return sign | (((exponent + 15) << 10) + mantissa);
}

/**
 * The bfloat16 bit pattern nearest to `x` (ties to even; NaN to 0x7fc0): the high half of the f32
 * `Math.fround(x)`, rounded (so round `x` to f32 first, as the GPU holds it).
 *
 * @example
 * ```ts
 * f32ToBf16(1); // 0x3f80
 * ```
 */
export function f32ToBf16(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  scratch.setFloat32(0, x);
  const bits = scratch.getUint32(0);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x), frac = x - floor;
  if (frac > 0.5 || (frac === 0.5 && floor % 2 === 1)) return floor + 1;
  return floor;
}

/**
 * Decodes 16-bit bit patterns (f16 or bf16) into `out` as f32, exactly, and returns `out`; `out` needs at
 * least `bits.length` elements.
 *
 * @example
 * ```ts
 * const bits = encodeHalves(new Float32Array([0.5, -2]), 'bf16');
 * decodeHalves(bits, 'bf16', new Float32Array(bits.length)); // Float32Array [0.5, -2]
 * ```
 */
export function decodeHalves<T extends Float32Array>(bits: Uint16Array, dtype: 'f16' | 'bf16', out: T): T {
  const decode = dtype === 'f16' ? f16ToF32 : bf16ToF32;
  for (let i = 0; i < bits.length; i++) out[i] = decode(bits[i]!);
  return out;
}

/**
 * Encodes f32 values as 16-bit patterns (to fill a `gradDtype: 'f16' | 'bf16'` buffer).
 *
 * @example
 * ```ts
 * device.queue.writeBuffer(gradBuffer, 0, encodeHalves(new Float32Array([0.5, -2]), 'f16'));
 * ```
 */
export function encodeHalves(values: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array<ArrayBuffer> {
  const encode = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  return Uint16Array.from(values, (x) => encode(x));
}
