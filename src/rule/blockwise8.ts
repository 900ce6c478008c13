/**
 * 8-bit blockwise optimizer state (`stateDtype: 'int8-blockwise'`), the CPU twin of the shader's
 * `stepBlockwise8`: bitsandbytes' format and rule, as bitsandbytes-foundation/bitsandbytes defines them
 * at commit 95f9af309d4d5793847169c39288dcd3fcbdf564 (docs/blockwise8.md says which rule follows which file):
 *
 * - each 8-bit tensor's mean square `v` is stored as one uint8 code per element, an index into
 *   {@link DYNAMIC_MAP} (bitsandbytes' `create_dynamic_map(signed=True)`, 256 f32 values in [-0.993, 1]),
 *   and one f32 `absmax` per block of {@link BLOCK_SIZE} = 256 elements; the value is `map[code] * absmax`;
 * - tensors under {@link MIN_8BIT_SIZE} = 4096 elements keep f32 state (`min_8bit_size`);
 * - a step dequantizes the block, runs the same rule as the f32 state (reference.ts `stepResolved`, so
 *   every supported option behaves as it does in f32), takes the block's new absmax = max |v| over its
 *   elements, and stores each `v / absmax` (f32 division) as its nearest code by f32 midpoints, found
 *   by bitsandbytes' binary search (`quantize_2D<1>`, csrc/kernels.cu); the parameters are updated with
 *   the unquantized new `v`, as bitsandbytes' kernel does.
 *
 * A block whose absmax is 0 stores the zero code 127 (bitsandbytes divides 0 by 0 there and stores code
 * 0, whose value times 0 is -0: the same value). Elements past a tensor's end (the last block's padding)
 * are not part of the absmax and hold code 127.
 */
import { resolveOptions, type RMSPropOptions, type ResolvedOptions } from './options.js';
import {
  checkMultiplyAdd,
  stepHyper,
  stepResolved,
  type MultiplyAdd,
  type StepContext,
  type StepHyper,
} from './reference.js';

/**
 * Elements per absmax: bitsandbytes' 8-bit optimizers' block size.
 *
 * @example
 * ```ts
 * const blocks = Math.ceil(size / BLOCK_SIZE); // absmax values of an 8-bit tensor
 * ```
 */
export const BLOCK_SIZE = 256;

/**
 * Tensors with fewer elements keep f32 state (bitsandbytes' `min_8bit_size`).
 *
 * @example
 * ```ts
 * const eightBit = size >= MIN_8BIT_SIZE; // with stateDtype 'int8-blockwise'
 * ```
 */
export const MIN_8BIT_SIZE = 4096;

/** The code of 0 in {@link DYNAMIC_MAP}. */
export const ZERO_CODE = 127;

/**
 * The f32 bit patterns of bitsandbytes' signed dynamic map, `create_dynamic_map(signed=True,
 * max_exponent_bits=7, total_bits=8)`, as PyTorch computes it (float32 linspace and products; the
 * last bits depend on that): recorded by test/fixtures/make_blockwise8_fixtures.py, checked against
 * test/fixtures/blockwise8/dynamic-map.json. Sorted; index 127 is 0, index 255 is 1.
 */
const DYNAMIC_MAP_BITS = new Uint32Array([
  0xbf7e3333, 0xbf7a9999, 0xbf770000, 0xbf736666, 0xbf6fcccc, 0xbf6c3333, 0xbf68999a, 0xbf650000,
  0xbf616666, 0xbf5dcccc, 0xbf5a3333, 0xbf569999, 0xbf530000, 0xbf4f6666, 0xbf4bcccc, 0xbf483333,
  0xbf44999a, 0xbf410000, 0xbf3d6667, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6667,
  0xbf27cccd, 0xbf243333, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
  0xbf0b0000, 0xbf076666, 0xbf03cccd, 0xbf003333, 0xbef93334, 0xbef20000, 0xbeeacccc, 0xbee3999a,
  0xbedc6666, 0xbed53332, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13332, 0xbeaa0000,
  0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d999a, 0xbe6f3334, 0xbe60cccd,
  0xbe526666, 0xbe440000, 0xbe359999, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
  0xbdc9eb85, 0xbdc428f5, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c28, 0xbda1999a,
  0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147a, 0xbd728f5d, 0xbd670a3d,
  0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae147,
  0xbcfeb852, 0xbce7ae13, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5c, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
  0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
  0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
  0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
  0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
  0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
  0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
  0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
  0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
  0x3c68f5c3, 0x3c8b851f, 0x3ca28f5c, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae13, 0x3cfeb852, 0x3d0ae147,
  0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
  0x3d728f5d, 0x3d7e147a, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
  0x3da75c28, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f5, 0x3dc9eb85, 0x3ddb3334,
  0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e359999, 0x3e440000, 0x3e526666, 0x3e60cccd,
  0x3e6f3334, 0x3e7d999a, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
  0x3eb13332, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53332, 0x3edc6666, 0x3ee3999a,
  0x3eeacccc, 0x3ef20000, 0x3ef93334, 0x3f003333, 0x3f03cccd, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
  0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243333, 0x3f27cccd, 0x3f2b6667,
  0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6667, 0x3f410000, 0x3f44999a, 0x3f483333,
  0x3f4bcccc, 0x3f4f6666, 0x3f530000, 0x3f569999, 0x3f5a3333, 0x3f5dcccc, 0x3f616666, 0x3f650000,
  0x3f68999a, 0x3f6c3333, 0x3f6fcccc, 0x3f736666, 0x3f770000, 0x3f7a9999, 0x3f7e3333, 0x3f800000,
]);

/**
 * The 256 values a code stands for (times its block's absmax): bitsandbytes' signed dynamic map.
 *
 * @example
 * ```ts
 * DYNAMIC_MAP[ZERO_CODE]; // 0
 * DYNAMIC_MAP[255]; // 1
 * ```
 */
export const DYNAMIC_MAP: Float32Array = new Float32Array(DYNAMIC_MAP_BITS.buffer);

const f = Math.fround;

/**
 * The code of `x` (a value divided by its block's absmax, so in [-1, 1]): bitsandbytes'
 * `quantize_2D<1>` without stochastic rounding. A binary search from code 127 in steps of 64, 32, ...,
 * 1, then the nearer of the last value and its neighbour by their f32 midpoint. The shader's
 * `quantizeCode` is the same search.
 *
 * @example
 * ```ts
 * quantizeCode(1); // 255
 * quantizeCode(0); // 127
 * ```
 */
export function quantizeCode(x: number): number {
  const map = DYNAMIC_MAP;
  let pivot = 127, upperPivot = 255, lowerPivot = 0;
  let lower = -1, upper = 1;
  let val = map[pivot]!;
  for (let step = 64; step > 0; step >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += step;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= step;
    }
    val = map[pivot]!;
  }
  if (x > val) return x > f(f(upper + val) * 0.5) ? upperPivot : pivot;
  return x < f(f(lower + val) * 0.5) ? lowerPivot : pivot;
}

/**
 * The f32 midpoints `(map[c] + map[c + 1]) * 0.5` the binary search's last step compares with, for
 * c = 0..254; entry 255 is the largest f32 (no code above 255).
 */
export const DYNAMIC_MIDPOINTS: Float32Array = (() => {
  const mids = new Float32Array(256);
  for (let c = 0; c < 255; c++) mids[c] = f(f(DYNAMIC_MAP[c]! + DYNAMIC_MAP[c + 1]!) * 0.5);
  mids[255] = 3.4028234663852886e38;
  return mids;
})();

/** f32 bits >> BUCKET_SHIFT: a bucket is the exponent and the top 6 mantissa bits of |x|. */
const BUCKET_SHIFT = 17;
/** The first bucket: |x| below 2^-22 (under the first midpoint above 0, 2.77e-7) is all code 127. */
export const BUCKET_LOW = (127 - 22) << 6;
/** The last bucket: 1.0's (|x| >= 1 is all code 255). */
export const BUCKET_HIGH = 127 << 6;

/**
 * Per bucket of |x| (f32 bits >> 17, from BUCKET_LOW to BUCKET_HIGH): the binary search's code of the
 * bucket's smallest value, `quantizeCode(that value)`. Every bucket holds at most one midpoint, so the
 * code of any |x| in it is this code or the next (test/fixtures/blockwise8-exhaustive.ts checks it).
 */
export const BUCKET_CODES: Uint8Array = (() => {
  const codes = new Uint8Array(BUCKET_HIGH - BUCKET_LOW + 1);
  const bits = new Uint32Array(1), value = new Float32Array(bits.buffer);
  for (let b = 0; b < codes.length; b++) {
    bits[0] = (BUCKET_LOW + b) << BUCKET_SHIFT;
    codes[b] = quantizeCode(value[0]!);
  }
  return codes;
})();

/**
 * Per bucket of |x| (as BUCKET_CODES): the f32 bits of the threshold above which |x| takes the bucket's
 * code c0 plus one. It is the midpoint of c0 and c0 + 1 when c0 is even, and the f32 just below it when
 * c0 is odd: the search lands on even codes only, so a tie goes to the even code, and `|x| > the f32
 * below m` is `|x| >= m`. These midpoints are positive and finite, so the one below is bits - 1, and
 * for floats >= 0 the bits order as the values do: |x|'s bits are compared as integers (NaN's, above
 * every threshold, fall in the last bucket, whose code is already 255).
 */
export const BUCKET_THRESHOLD_BITS: Uint32Array = (() => {
  const thresholds = new Uint32Array(BUCKET_CODES.length);
  const mids = new Uint32Array(DYNAMIC_MIDPOINTS.buffer, DYNAMIC_MIDPOINTS.byteOffset, 256);
  BUCKET_CODES.forEach((c0, b) => {
    thresholds[b] = (c0 & 1) === 1 ? mids[c0]! - 1 : mids[c0]!;
  });
  return thresholds;
})();

/**
 * The shader's `quantizeCode` (rmsprop.wgsl), a port: the same code as {@link quantizeCode} for every
 * f32 in [-1, 1] (and beyond, to ±inf), without the search. The code c of |x| is the bucket's code c0
 * plus one if |x| is above the bucket's threshold (BUCKET_THRESHOLD_BITS: the midpoint of c0 and c0 + 1,
 * ties to the even code, compared as bits). A negative x takes the mirror code 254 - c (the map is symmetric about 127,
 * the midpoints too, and even stays even), 0 for c = 255. `bits` is x's f32 bit pattern.
 *
 * @example
 * ```ts
 * quantizeCodeBuckets(new Uint32Array(new Float32Array([0.5]).buffer)[0]!); // quantizeCode(0.5)
 * ```
 */
export function quantizeCodeBuckets(bits: number): number {
  const magnitude = (bits & 0x7fffffff) >>> 0;
  const bucket = Math.min(Math.max(magnitude >>> BUCKET_SHIFT, BUCKET_LOW), BUCKET_HIGH) - BUCKET_LOW;
  const c = Math.min(BUCKET_CODES[bucket]! + (magnitude > BUCKET_THRESHOLD_BITS[bucket]! ? 1 : 0), 255); // as bits; 255: +inf
  return bits >>> 31 === 1 ? Math.max(254 - c, 0) : c;
}

/**
 * One tensor's 8-bit state: `codes` (one per element, padded with {@link ZERO_CODE} to whole blocks)
 * and one `absmax` per block of {@link BLOCK_SIZE} elements.
 *
 * @example
 * ```ts
 * const state = createBlockwise8State(5000, { stateDtype: 'int8-blockwise' });
 * state.absmax.length; // 20 blocks
 * ```
 */
export interface Blockwise8State {
  /** Elements of the tensor. */
  readonly size: number;
  /** Codes, `blocks * BLOCK_SIZE` of them (past `size`: ZERO_CODE). */
  readonly codes: Uint8Array;
  /** One scale per block. */
  readonly absmax: Float32Array;
}

/** Blocks of a tensor of `size` elements. */
export function blocksOf(size: number): number {
  return Math.ceil(size / BLOCK_SIZE);
}

/**
 * Whether a tensor of `size` elements keeps 8-bit state under options `o`: `stateDtype
 * 'int8-blockwise'` and at least {@link MIN_8BIT_SIZE} elements.
 *
 * @example
 * ```ts
 * usesBlockwise8({ stateDtype: 'int8-blockwise' }, 4096); // true
 * usesBlockwise8({ stateDtype: 'int8-blockwise' }, 4095); // false: f32 state
 * ```
 */
export function usesBlockwise8(o: { stateDtype?: string }, size: number): boolean {
  return o.stateDtype === 'int8-blockwise' && size >= MIN_8BIT_SIZE;
}

/**
 * The 8-bit state of `size` elements whose mean square starts at `initialScale` (0 unless a preset
 * says 1): all codes 127 and absmax 0, or (initialScale > 0) all codes 255 and absmax initialScale.
 *
 * @example
 * ```ts
 * const state = createBlockwise8State(8192, { initialScale: 1 }); // 32 blocks, each absmax 1
 * ```
 */
export function createBlockwise8State(size: number, options?: Partial<RMSPropOptions>): Blockwise8State {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`size must be a positive integer element count, got ${size}.`);
  }
  const o = resolveOptions(options);
  const state: Blockwise8State = {
    size,
    codes: new Uint8Array(blocksOf(size) * BLOCK_SIZE).fill(ZERO_CODE),
    absmax: new Float32Array(blocksOf(size)),
  };
  if (o.initialScale !== 0) quantizeInto(new Float32Array(size).fill(o.initialScale), state);
  return state;
}

/**
 * The f32 values of an 8-bit state: `map[code] * absmax`, rounded to f32 (one multiplication).
 *
 * @example
 * ```ts
 * const v = dequantizeBlockwise(state); // Float32Array(state.size)
 * ```
 */
export function dequantizeBlockwise(state: Blockwise8State, out = new Float32Array(state.size)): Float32Array {
  for (let i = 0; i < state.size; i++) {
    out[i] = f(DYNAMIC_MAP[state.codes[i]!]! * state.absmax[Math.floor(i / BLOCK_SIZE)]!);
  }
  return out;
}

/**
 * Quantizes f32 `values` into a new 8-bit state (each block's absmax, each element's nearest code):
 * what a step stores, and how f32 state converts to 8 bits.
 *
 * @example
 * ```ts
 * const state = quantizeBlockwise(squareAvg); // squareAvg: a Float32Array of >= 0 values
 * ```
 */
export function quantizeBlockwise(values: Float32Array): Blockwise8State {
  const state: Blockwise8State = {
    size: values.length,
    codes: new Uint8Array(blocksOf(values.length) * BLOCK_SIZE).fill(ZERO_CODE),
    absmax: new Float32Array(blocksOf(values.length)),
  };
  quantizeInto(values, state);
  return state;
}

/** Stores `values` (state.size of them) into `state`, block by block. */
function quantizeInto(values: Float32Array, state: Blockwise8State): void {
  for (let b = 0; b < state.absmax.length; b++) {
    const start = b * BLOCK_SIZE, end = Math.min(start + BLOCK_SIZE, state.size);
    quantizeBlock(values.subarray(start, end), state.codes.subarray(start, end), state.absmax, b);
  }
}

/** One block: its absmax (max |v| over the block's elements) into absmax[b], each element's code into `codes`. */
function quantizeBlock(values: Float32Array, codes: Uint8Array, absmax: Float32Array, b: number): void {
  let scale = 0;
  for (let i = 0; i < values.length; i++) scale = Math.max(scale, Math.abs(values[i]!));
  absmax[b] = scale;
  // As the shader's `absmax > 0.0`: a block of zeros, or one a NaN has poisoned, stores the zero code.
  for (let i = 0; i < values.length; i++) codes[i] = scale > 0 ? quantizeCode(f(values[i]! / scale)) : ZERO_CODE;
}

/**
 * One RMSProp step on the CPU with 8-bit state, in place on `param` and `state`: per block,
 * dequantize, the f32 rule (reference.ts), new absmax, requantize. The twin of the shader's
 * `stepBlockwise8`. Options as {@link referenceStep}; those 8-bit state refuses (centered, momentum,
 * 16-bit parameters or gradients) throw.
 *
 * @example
 * ```ts
 * const p = new Float32Array(4096), g = new Float32Array(4096).fill(0.1);
 * const options = { lr: 0.01, stateDtype: 'int8-blockwise' } as const;
 * const s = createBlockwise8State(p.length, options);
 * blockwise8Step(p, g, s, options);
 * ```
 */
export function blockwise8Step(
  param: Float32Array,
  grad: Float32Array,
  state: Blockwise8State,
  options?: Partial<RMSPropOptions>,
  multiplyAdd: MultiplyAdd = 'fused',
  context: StepContext = {},
): void {
  const o = resolveOptions({ stateDtype: 'int8-blockwise', ...options });
  checkMultiplyAdd(multiplyAdd);
  if (!(param instanceof Float32Array) || !(grad instanceof Float32Array)) {
    throw new TypeError('blockwise8Step: param and grad must be Float32Arrays.');
  }
  if (param.length !== grad.length || state.size !== param.length) {
    throw new RangeError(
      `blockwise8Step: param (${param.length}), grad (${grad.length}) and state (${state.size}) must have one size.`,
    );
  }
  stepBlockwise8Resolved(param, grad, state, o, multiplyAdd, stepHyper(o, context, 'blockwise8Step(context)'));
}

/** The 8-bit step on checked arguments (a scratch block of f32 values, reused). */
export function stepBlockwise8Resolved(
  param: Float32Array,
  grad: Float32Array,
  state: Blockwise8State,
  o: ResolvedOptions,
  multiplyAdd: MultiplyAdd,
  hyper: StepHyper,
): void {
  const v = new Float32Array(BLOCK_SIZE);
  for (let b = 0; b < state.absmax.length; b++) {
    const start = b * BLOCK_SIZE, end = Math.min(start + BLOCK_SIZE, state.size), n = end - start;
    const scale = state.absmax[b]!;
    for (let k = 0; k < n; k++) v[k] = f(DYNAMIC_MAP[state.codes[start + k]!]! * scale);
    const block = { size: n, squareAvg: v.subarray(0, n) };
    stepResolved(param.subarray(start, end), grad.subarray(start, end), block, o, multiplyAdd, hyper);
    quantizeBlock(block.squareAvg, state.codes.subarray(start, end), state.absmax, b);
  }
}
