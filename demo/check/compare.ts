/**
 * GPU against CPU, the pure part: distances in ULPs, which tolerance an adapter gets, and the
 * comparison of one tensor against the CPU reference and its error bound. No test framework and no
 * WebGPU here, so that the GPU tests (test/gpu/harness.ts), the browser suite, `npm run verify`
 * and the demo's "Check this GPU" page all judge a result the same way.
 *
 * Two tolerances (docs/tolerance.md says where each comes from):
 * - **exact** (0 ULPs): on the adapters where it was measured, SwiftShader and lavapipe. Their
 *   division and sqrt round correctly and their `fma` rounds as `detectMultiplyAdd` says, so the
 *   GPU is its CPU twin bit for bit; any difference is a change of the rule on one side.
 * - **bound**: everywhere else, per element, |gpu - cpu| <= the bound that demo/check/bound.ts
 *   derives from WGSL's accuracy table, operation by operation through the update rule.
 */

const scratch = new DataView(new ArrayBuffer(4));

/** FLT_MIN, the smallest normal f32. WGSL lets subnormals flush to 0: below it, a value counts as 0. */
export const FLT_MIN = 2 ** -126;

/** The f32 bit pattern of `x` as an integer that orders like the value (-0 and 0 are both 0). */
function ordered(x: number): number {
  scratch.setFloat32(0, x);
  const u = scratch.getUint32(0);
  return u & 0x80000000 ? -(u & 0x7fffffff) : u;
}

/**
 * The ULP of f32 values of magnitude `x`: the gap from fround(|x|) to the next f32 up (for
 * |x| below FLT_MIN, the ULP of FLT_MIN).
 *
 * @example
 * ```ts
 * ulpOf(1); // 2 ** -23
 * ```
 */
export function ulpOf(x: number): number {
  const f = Math.fround(Math.max(Math.abs(x), FLT_MIN));
  scratch.setFloat32(0, f);
  scratch.setUint32(0, scratch.getUint32(0) + 1);
  return scratch.getFloat32(0) - f;
}

/**
 * The distance from `gpu` to `cpu`, in ULPs:
 * - both at least `floor` in magnitude and of the same sign: the number of f32 values between them;
 * - otherwise: |gpu - cpu| in ULPs of max(|gpu|, |cpu|, floor).
 * Subnormals count as 0 (WGSL may flush them). NaN against NaN, or the same infinity, is 0; NaN
 * or an infinity against anything else is Infinity (so NaN is told from Infinity and from a finite value).
 *
 * @example
 * ```ts
 * ulpError(1 + 2 ** -23, 1); // 1
 * ulpError(0, 1e-40); // 0: a flushed subnormal
 * ```
 */
export function ulpError(gpu: number, cpu: number, floor = FLT_MIN): number {
  if (!Number.isFinite(gpu) || !Number.isFinite(cpu)) {
    return Object.is(gpu, cpu) || (Number.isNaN(gpu) && Number.isNaN(cpu)) ? 0 : Infinity;
  }
  if (Math.abs(gpu) < FLT_MIN) gpu = 0;
  if (Math.abs(cpu) < FLT_MIN) cpu = 0;
  const a = Math.abs(gpu), c = Math.abs(cpu);
  if (a >= floor && c >= floor && Math.sign(gpu) === Math.sign(cpu)) return Math.abs(ordered(gpu) - ordered(cpu));
  return Math.abs(gpu - cpu) / ulpOf(Math.max(a, c, floor));
}

/** What an adapter is called when the browser gives no adapter info (Firefox's strings are all empty). */
export const UNNAMED_ADAPTER = 'an adapter the browser does not name (no adapter info)';

/**
 * An adapter's name in words: its info strings joined, or {@link UNNAMED_ADAPTER} where they are empty
 * (then {@link toleranceFor} gives the WGSL bound: an adapter nobody named was not measured).
 *
 * @example
 * ```ts
 * adapterWords({ vendor: 'google', architecture: 'swiftshader', device: '', description: '' }); // 'google swiftshader'
 * ```
 */
export function adapterWords(info: Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'device' | 'description'>): string {
  return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ').trim()
    || UNNAMED_ADAPTER;
}

/**
 * Which tolerance an adapter gets. `exact`: bit for bit, measured on this adapter kind;
 * `bound`: within the error bound WGSL's accuracy table allows (demo/check/bound.ts).
 *
 * @example
 * ```ts
 * const t: Tolerance = toleranceFor('SwiftShader driver 5.0.0'); // { kind: 'exact', ... }
 * ```
 */
export interface Tolerance {
  readonly kind: 'exact' | 'bound';
  /** A short name for tables: '0 ULPs' or 'WGSL bound'. */
  readonly label: string;
  /** Why, in one sentence. */
  readonly why: string;
}

/** An adapter kind measured bit-exact: its name, how its description reads, and what was measured. */
export interface ExactAdapter {
  readonly name: string;
  readonly pattern: RegExp;
  readonly measured: string;
}

/** The adapters on which every GPU test was measured bit-exact (0 ULPs) against the CPU twin. */
export const EXACT_ADAPTERS: readonly ExactAdapter[] = [
  {
    name: 'SwiftShader',
    pattern: /swiftshader/i,
    measured: 'SwiftShader 5.0.0 from Debian\'s chromium 156 (Dawn in Node, and Chromium\'s own): ' +
      'every GPU and browser test, 0 ULPs',
  },
  {
    name: 'lavapipe',
    pattern: /llvmpipe|lavapipe/i,
    measured: 'lavapipe, Mesa 25.0.7 (llvmpipe, LLVM 15): every GPU test, 0 ULPs',
  },
];

/**
 * The tolerance of the adapter described by `description` (vendor, architecture, device and
 * description joined): exact on SwiftShader and lavapipe, the WGSL bound elsewhere (or everywhere,
 * with `forceBound`: to check the bound's machinery on an exact adapter).
 *
 * @example
 * ```ts
 * toleranceFor('nvidia hopper NVIDIA H200').kind; // 'bound'
 * ```
 */
export function toleranceFor(description: string, { forceBound = false }: { forceBound?: boolean } = {}): Tolerance {
  const exact = forceBound ? undefined : EXACT_ADAPTERS.find((a) => a.pattern.test(description));
  if (exact) return { kind: 'exact', label: '0 ULPs', why: `bit for bit: measured on ${exact.measured}` };
  const why = 'within the per-element bound derived from WGSL\'s accuracy table (docs/tolerance.md): ' +
    'not measured on this adapter';
  return { kind: 'bound', label: 'WGSL bound', why };
}

/**
 * One tensor of the GPU against the CPU reference.
 *
 * @example
 * ```ts
 * const r: TensorComparison = compareTensor(gpu, cpu, bound, 'exact');
 * if (!r.pass) console.log(describeComparison(r, 'w.param'));
 * ```
 */
export interface TensorComparison {
  /** Elements compared. */
  readonly count: number;
  /** The largest distance in ULPs (`ulpError` at FLT_MIN), and where. */
  readonly worstUlps: number;
  readonly index: number;
  readonly gpu: number;
  readonly cpu: number;
  /** The bound at the worst element, in ULPs of the larger of the two values (NaN without a bound). */
  readonly boundUlps: number;
  /** The largest |gpu - cpu| / bound over the elements (0 when all are equal; NaN without a bound). */
  readonly boundUsed: number;
  /** Where boundUsed is. */
  readonly boundIndex: number;
  /** exact: every element within 0 ULPs; bound: every element within its bound. */
  readonly pass: boolean;
  /** The first non-finite CPU value's index, or -1 (a reference that went NaN would make any comparison pass). */
  readonly cpuNonFinite: number;
}

/** Options of {@link compareTensor}. */
export interface CompareOptions {
  /**
   * Accept non-finite CPU values (a 16-bit parameter that overflowed to Infinity, as the test means
   * it to): the GPU must then match them (or be within an infinite bound). Without it a non-finite
   * CPU value fails the comparison, since a reference that went NaN would make any comparison pass.
   */
  readonly allowNonFinite?: boolean;
}

/**
 * Compares `gpu` with `cpu` element by element: exact, 0 ULPs everywhere; bound, |gpu - cpu| <= bound[i]
 * (an absolute error in the value's units, from demo/check/bound.ts). Also reports the worst
 * distance in ULPs and how much of the bound it used, whichever the tolerance. A NaN or infinity
 * on the GPU where the CPU is finite fails either way.
 *
 * @example
 * ```ts
 * compareTensor(new Float32Array([1]), new Float32Array([1]), undefined, 'exact').pass; // true
 * ```
 */
export function compareTensor(
  gpu: Float32Array,
  cpu: Float32Array,
  bound: ArrayLike<number> | undefined,
  kind: Tolerance['kind'],
  { allowNonFinite = false }: CompareOptions = {},
): TensorComparison {
  if (gpu.length !== cpu.length) {
    throw new RangeError(`compareTensor: ${gpu.length} GPU values against ${cpu.length} CPU values.`);
  }
  if (kind === 'bound' && (!bound || bound.length !== cpu.length)) {
    throw new RangeError('compareTensor: the bound tolerance needs a bound per element.');
  }
  const g = new Uint32Array(gpu.buffer, gpu.byteOffset, gpu.length);
  const c = new Uint32Array(cpu.buffer, cpu.byteOffset, cpu.length);
  let worstUlps = 0, index = -1, boundUsed = 0, boundIndex = -1, cpuNonFinite = -1;
  let pass = true;
  for (let i = 0; i < gpu.length; i++) {
    const x = cpu[i]!;
    if (cpuNonFinite < 0 && !Number.isFinite(x)) cpuNonFinite = i;
    if (g[i] === c[i]) continue; // the usual case, and the fast path for 67M elements
    const y = gpu[i]!;
    const e = ulpError(y, x);
    if (e > worstUlps) { worstUlps = e; index = i; }
    if (e === 0) continue; // -0 against 0, or a flushed subnormal
    if (kind === 'exact') pass = false;
    if (bound) {
      const b = bound[i]!;
      if (!(b < Infinity)) {
        // The bound allows anything here (a value at the edge of overflow, say), but not a NaN for a number.
        if (kind === 'bound' && Number.isNaN(y) && !Number.isNaN(x)) pass = false;
        continue;
      }
      const diff = Math.abs(y - x);
      const used = Number.isFinite(diff) ? diff / b : Infinity;
      if (!(used <= 1)) pass = false;
      if (!(used <= boundUsed)) { boundUsed = used; boundIndex = i; }
    }
  }
  const b = bound && index >= 0 ? bound[index]! / ulpOf(Math.max(Math.abs(gpu[index]!), Math.abs(cpu[index]!))) : NaN;
  if (cpuNonFinite >= 0 && !allowNonFinite) pass = false;
  return {
    count: gpu.length, worstUlps, index,
    gpu: index >= 0 ? gpu[index]! : NaN, cpu: index >= 0 ? cpu[index]! : NaN,
    boundUlps: b, boundUsed: bound ? boundUsed : NaN, boundIndex, pass, cpuNonFinite,
  };
}

/**
 * One tensor's 8-bit state codes (stateDtype 'int8-blockwise') from the GPU against the twin's.
 * exact: every code equal. bound: every code equal, or the neighbour of the twin's code (one code
 * apart), and then only where the twin's quotient x = v / absmax lies within `quotientBound` of
 * `midpoints[lower code]`, the f32 midpoint both quantizers compare with: the one place a GPU whose
 * quotient is within its bound of the twin's may land on the other side (demo/check/bound.ts
 * `blockwise8Bounds`). Anything else (two codes apart, or a neighbour far from the midpoint) fails.
 * In the result a code is its own unit: `worstUlps` counts codes apart, `boundUsed` is the largest
 * |x - midpoint| / bound over the neighbours. Without a bound (`bounds` undefined: no step since both
 * sides shared the state) the codes must be equal whichever the tolerance.
 *
 * @example
 * ```ts
 * compareCodes(gpuCodes, cpuCodes, undefined, DYNAMIC_MIDPOINTS, 'exact').pass;
 * ```
 */
export function compareCodes(
  gpu: Uint8Array,
  cpu: Uint8Array,
  bounds: { readonly quotient: Float32Array; readonly quotientBound: ArrayLike<number> } | undefined,
  midpoints: ArrayLike<number>,
  kind: Tolerance['kind'],
): TensorComparison {
  if (gpu.length !== cpu.length) {
    throw new RangeError(`compareCodes: ${gpu.length} GPU codes against ${cpu.length} CPU codes.`);
  }
  if (bounds && bounds.quotient.length !== cpu.length) {
    throw new RangeError('compareCodes: the bound tolerance needs a quotient and a bound per code.');
  }
  let worstUlps = 0, index = -1, boundUsed = 0, boundIndex = -1, pass = true;
  for (let i = 0; i < gpu.length; i++) {
    const g = gpu[i]!, c = cpu[i]!;
    if (g === c) continue;
    const apart = Math.abs(g - c);
    if (apart > worstUlps) { worstUlps = apart; index = i; }
    if (kind === 'exact' || !bounds) { pass = false; continue; }
    const b = bounds.quotientBound[i]!;
    if (!(b < Infinity)) continue; // the bound allows any code here (compareTensor's rule for an infinite bound)
    const used = apart === 1 ? Math.abs(bounds.quotient[i]! - midpoints[Math.min(g, c)]!) / b : Infinity;
    if (!(used <= 1)) pass = false;
    if (!(used <= boundUsed)) { boundUsed = used; boundIndex = i; }
  }
  return {
    count: gpu.length, worstUlps, index,
    gpu: index >= 0 ? gpu[index]! : NaN, cpu: index >= 0 ? cpu[index]! : NaN,
    boundUlps: NaN, boundUsed: bounds ? boundUsed : NaN, boundIndex, pass, cpuNonFinite: -1,
  };
}

/**
 * One line about a comparison, naming the worst element.
 *
 * @example
 * ```ts
 * console.log(describeComparison(compareTensor(gpu, cpu, bound, 'bound'), "'w' param"));
 * ```
 */
export function describeComparison(r: TensorComparison, what: string): string {
  if (r.cpuNonFinite >= 0 && r.pass) return `${what}: non-finite values where the GPU matches them`;
  if (r.cpuNonFinite >= 0 && r.index < 0) {
    return `${what}: the CPU reference has a non-finite value at [${r.cpuNonFinite}]`;
  }
  const used = Number.isNaN(r.boundUsed) ? '' : `, ${(100 * r.boundUsed).toPrecision(3)}% of the bound used`;
  if (r.index < 0) return `${what}: ${r.count} elements bit-exact${used}`;
  const at = `at [${r.index}] of ${r.count}: gpu ${r.gpu}, cpu ${r.cpu}`;
  const bound = Number.isNaN(r.boundUlps) ? '' : ` (bound there ${r.boundUlps.toPrecision(3)} ULPs)`;
  return `${what}: ${r.worstUlps} ULPs ${at}${bound}${used}`;
}

/** Running worst figures over many comparisons (for a report line or a table row). */
export class WorstSoFar {
  worstUlps = 0;
  boundUsed = 0;
  elements = 0;
  comparisons = 0;
  differing = 0;
  where = 'every element bit-exact';
  failures: string[] = [];

  /** Adds one comparison of `what`. */
  add(r: TensorComparison, what: string): void {
    this.elements += r.count;
    this.comparisons++;
    if (r.worstUlps > 0) this.differing++;
    if (r.worstUlps > this.worstUlps) {
      this.worstUlps = r.worstUlps;
      this.where = describeComparison(r, what);
    }
    if (!Number.isNaN(r.boundUsed) && r.boundUsed > this.boundUsed) this.boundUsed = r.boundUsed;
    if (!r.pass) this.failures.push(describeComparison(r, what));
  }
}
