/**
 * Shared harness of the GPU tests (vitest project `gpu`, Dawn in Node, on the adapter WEBGPU_ADAPTER
 * picks: demo/node/dawn.ts).
 *
 * - `useDevice()`: one device per test file, made in `beforeAll`, destroyed in `afterAll`; every
 *   uncaptured device error fails the test that was running (checked in `afterEach`). It sets the
 *   file's TOLERANCE (from the adapter) and MULTIPLY_ADD (probed on the device).
 * - `gpuTest()` / `withErrorScopes()`: run a body inside validation, out-of-memory and internal
 *   error scopes and assert that each `popErrorScope()` is null.
 * - `cpuTwin()`: the CPU reference a GPU optimizer is checked against (demo/check/checked-reference.ts),
 *   rounding as this adapter's fma does and bounding how far a conformant GPU may be from it;
 *   `expectMatchesTwin()` compares the parameters and every state slot with it, at TOLERANCE;
 *   `expectClose()` one array, `expectNormClose()` the gradient norm.
 * - Buffer helpers: upload a Float32Array into a STORAGE | COPY_SRC | COPY_DST buffer, optionally at
 *   an offset inside a larger one; read any range back through a staging buffer of our own.
 * - A deterministic RNG and the data the tests train on.
 * - `expectBitExact()`: for what is promised bit for bit on every adapter (a state dict round trip,
 *   a checkpoint resumed, padding and neighbours left untouched, a skipped step).
 */
import { afterAll, afterEach, beforeAll, expect, inject, test, vi, type MockInstance } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import {
  REDUCE_TARGET_PARTIALS,
  detectMultiplyAdd,
  reduceTargetPartials,
  type MultiplyAdd, type RMSPropConfig, type RMSPropState, type ReferenceHalfParamSpec, type ReferenceParamGroup, type ReferenceParamSpec,
} from '../../src/index.js';
import { mulberry32 } from '../../demo/problems/random.js';
import { CheckedReference, compareAll } from '../../demo/check/checked-reference.js';
import {
  compareTensor, describeComparison, FLT_MIN, toleranceFor, ulpError, ulpOf, WorstSoFar, type CompareOptions, type Tolerance,
} from '../../demo/check/compare.js';

export { ulpError, ulpOf, CheckedReference };

// ---------------------------------------------------------------------------------------------
// Tolerance
// ---------------------------------------------------------------------------------------------

/**
 * How far a GPU result may be from its CPU twin on this run's adapter (set when the file's device
 * is made), for parameters after every step and every state slot:
 * - exact (0 ULPs) on SwiftShader and lavapipe, where it is measured (`ULP_REPORT=1 npx vitest run
 *   --project gpu`, on each driver: 0 ULPs over every element of every test). There f32 division
 *   and sqrt round correctly and `fma` rounds as detectMultiplyAdd says, so any difference at all
 *   is a change of the rule or of its order of operations on one side only;
 * - the WGSL bound elsewhere: per element, what WGSL's accuracy table allows, composed operation by
 *   operation through the rule (demo/check/bound.ts, derived in docs/tolerance.md; never taken from
 *   a run). The CPU twin carries it alongside its values.
 */
export let TOLERANCE: Tolerance = toleranceFor('');

/** How this run's adapter rounds WGSL's `fma` (set when the file's device is made); CPU twins round the same. */
export let MULTIPLY_ADD: MultiplyAdd = 'fused';

/** The gradient pre-pass's target partials on this run's adapter (its order of additions); CPU twins follow it. */
export let REDUCE_PARTIALS: number = REDUCE_TARGET_PARTIALS.gpu;

/** FLT_MIN, the smallest normal f32: below it a value counts as 0 (WGSL lets a GPU flush subnormals). */
export const DEFAULT_FLOOR = FLT_MIN;

// ---------------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------------

export interface GpuFixture {
  /** The file's device (valid inside tests and hooks). */
  readonly device: GPUDevice;
  /** Adapter description, for logs. */
  readonly description: string;
  /** The tolerance of this adapter (TOLERANCE). */
  readonly tolerance: Tolerance;
}

/**
 * One device per test file. Call at the top level of the file. Uncaptured errors (those raised
 * outside an error scope) fail the test during which they arrived.
 */
export function useDevice(): GpuFixture {
  let device: GPUDevice | undefined;
  let description = '';
  const uncaptured: string[] = [];
  const fixture: GpuFixture = {
    get device() {
      if (!device) throw new Error('useDevice(): the device is made in beforeAll; use it inside tests.');
      return device;
    },
    get description() {
      return description;
    },
    get tolerance() {
      return TOLERANCE;
    },
  };
  beforeAll(async () => {
    const found = await requestNodeDevice({ label: 'webgpu-rmsprop gpu tests' });
    device = found.device;
    description = found.description;
    // Every file runs on the adapter the run's global setup printed (test/gpu/global-setup.ts).
    const announced = inject('gpuAdapter');
    if (announced !== undefined) expect(description, 'this file\'s adapter, and the one the run announced').toBe(announced);
    // GPU_TOLERANCE=bound: compare with the WGSL bound even where 0 ULPs is measured (to exercise it).
    TOLERANCE = toleranceFor(description, { forceBound: process.env.GPU_TOLERANCE === 'bound' });
    MULTIPLY_ADD = await detectMultiplyAdd(device);
    REDUCE_PARTIALS = reduceTargetPartials(device);
    device.addEventListener('uncapturederror', (event) => {
      uncaptured.push((event as GPUUncapturedErrorEvent).error.message);
    });
  });
  afterEach(async () => {
    // Let errors of work still in flight arrive before looking.
    await device?.queue.onSubmittedWorkDone();
    const errors = uncaptured.splice(0);
    expect(errors, 'uncaptured WebGPU errors').toEqual([]);
  });
  afterAll(() => {
    reportMeasured();
    device?.destroy();
  });
  return fixture;
}

/**
 * Runs `body` inside validation, out-of-memory and internal error scopes, and asserts that
 * each popErrorScope() is null (after the body's work has finished on the queue). An exception
 * from the body is rethrown after the scopes are popped, so they never leak into the next test.
 */
export async function withErrorScopes<T>(device: GPUDevice, body: () => Promise<T> | T): Promise<T> {
  device.pushErrorScope('internal');
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: T | undefined, failure: unknown, failed = false;
  try {
    result = await body();
    await device.queue.onSubmittedWorkDone();
  } catch (e) {
    failure = e;
    failed = true;
  }
  const validation = await device.popErrorScope();
  const outOfMemory = await device.popErrorScope();
  const internal = await device.popErrorScope();
  if (failed) throw failure;
  expect(validation?.message ?? null, 'validation error').toBeNull();
  expect(outOfMemory?.message ?? null, 'out-of-memory error').toBeNull();
  expect(internal?.message ?? null, 'internal error').toBeNull();
  return result as T;
}

/** A test whose body runs inside `withErrorScopes` on the file's device. */
export function gpuTest(name: string, gpu: GpuFixture, body: (device: GPUDevice) => Promise<void> | void, timeout?: number): void {
  test(name, () => withErrorScopes(gpu.device, () => body(gpu.device)), timeout);
}

// ---------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------

export const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

/** A buffer for a tensor: where it lives, and the binding that names its range. */
export interface Placed {
  readonly buffer: GPUBuffer;
  readonly binding: GPUBufferBinding & { offset: number; size: number };
}

/**
 * Uploads `data` into a new buffer (STORAGE | COPY_SRC | COPY_DST unless `usage`), at byte
 * `offset` of a buffer of `bufferSize` bytes (the data's own size unless given). The bytes around
 * the data are filled with `fill` (a u32 pattern), so that a test can check they stay untouched.
 */
export function upload(
  device: GPUDevice,
  data: Float32Array,
  { offset = 0, bufferSize, usage = STORAGE_USAGE, label = 'test.buffer', fill = 0 }:
    { offset?: number; bufferSize?: number; usage?: number; label?: string; fill?: number } = {},
): Placed {
  const size = Math.ceil((bufferSize ?? offset + data.byteLength) / 4) * 4;
  if (offset + data.byteLength > size) throw new RangeError(`upload: ${data.byteLength} bytes at ${offset} do not fit ${size}.`);
  const buffer = device.createBuffer({ label, size, usage, mappedAtCreation: true });
  const mapped = buffer.getMappedRange();
  if (fill !== 0) new Uint32Array(mapped).fill(fill);
  new Float32Array(mapped, offset, data.length).set(data);
  buffer.unmap();
  return { buffer, binding: { buffer, offset, size: data.byteLength } };
}

/** Writes `data` at byte `offset` of `buffer` (through the queue). */
export function write(device: GPUDevice, buffer: GPUBuffer, offset: number, data: Float32Array): void {
  device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
}

/** Reads `size` bytes at `offset` of `buffer` back through a MAP_READ staging buffer of its own. */
export async function readBytes(device: GPUDevice, buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ label: 'test.staging', size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: 'test.readBytes' });
    encoder.copyBufferToBuffer(buffer, offset, staging, 0, size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    return copy;
  } finally {
    staging.destroy();
  }
}

/** `readBytes` as f32 values. */
export async function readFloats(device: GPUDevice, buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Promise<Float32Array> {
  return new Float32Array(await readBytes(device, buffer, offset, size));
}

/** The bit patterns of `x` (to compare bit for bit, telling -0 from 0 and NaN from NaN). */
export function bits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/** A deterministic RNG (mulberry32): the same seed, the same sequence, on every machine. */
export const rng = mulberry32;

/** Parameters uniform in [-1, 1). */
export function randomParams(n: number, random: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = random() * 2 - 1;
  return out;
}

/**
 * Gradients whose magnitudes span 1e-3 to 1e3 (log-uniform), with random signs, and about one in
 * `zeroEvery` exactly 0 (element 0 always is, so even one-element tensors meet a zero gradient).
 */
export function randomGrads(n: number, random: () => number, zeroEvery = 10): Float32Array {
  const out = new Float32Array(n);
  for (let i = 1; i < n; i++) {
    if (random() * zeroEvery < 1) continue;
    const magnitude = 10 ** (random() * 6 - 3);
    out[i] = random() < 0.5 ? -magnitude : magnitude;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPU against its CPU twin
// ---------------------------------------------------------------------------------------------

/** Tensors up to this many elements in all keep their bounds even on exact adapters (for the report). */
const TRACK_ON_EXACT = 1 << 20;

/**
 * The CPU twin of a GPU optimizer over the same parameters and options: a `ReferenceRMSProp` that
 * rounds as this adapter's fma does and, where the tolerance needs it (or the tensors are small),
 * bounds how far the GPU may be from it. Step both, then `expectMatchesTwin(gpu, twin)`.
 */
export function cpuTwin(
  params: readonly (ReferenceParamSpec | ReferenceHalfParamSpec)[] | readonly ReferenceParamGroup[],
  options?: RMSPropConfig,
): CheckedReference {
  const list = params as readonly (ReferenceParamSpec | ReferenceParamGroup)[];
  const elements = list.flatMap((p) => ('params' in p ? p.params : [p])).reduce((n, p) => n + p.param.length, 0);
  const track = TOLERANCE.kind === 'bound' || elements <= TRACK_ON_EXACT;
  return new CheckedReference(params, options, { multiplyAdd: MULTIPLY_ADD, track, reducePartials: REDUCE_PARTIALS });
}

const measured = new WorstSoFar();

/**
 * Asserts that a GPU optimizer's parameters (and, unless `state: false`, every state slot and the
 * step count) match its CPU twin at this adapter's TOLERANCE, and records the figures for the
 * run's report (`ULP_REPORT=1`). On failure the message names the worst element.
 */
export async function expectMatchesTwin(
  gpu: { readParams(): Promise<Float32Array[]>; stateDict(): Promise<RMSPropState> },
  twin: CheckedReference,
  what: string,
  options: { state?: boolean } & CompareOptions = {},
): Promise<void> {
  const { worst, tensors } = await twin.compareWith(gpu, TOLERANCE, options);
  for (const { what: which, result } of tensors) measured.add(result, `${what}: ${which}`);
  if (worst.failures.length > 0) expect.fail(`${what} (${TOLERANCE.label}): ${worst.failures.slice(0, 3).join('; ')}`);
}

/**
 * Asserts one GPU array against its CPU counterpart at TOLERANCE: bit for bit (0 ULPs) on an exact
 * adapter; within `bound` (per element, from a twin's `bounds()`) elsewhere. Checks that the CPU
 * values are finite (a reference that went NaN would make any comparison pass).
 */
export function expectClose(
  gpu: Float32Array,
  cpu: Float32Array,
  what: string,
  bound?: ArrayLike<number>,
  options: CompareOptions = {},
): void {
  expect(gpu.length, `${what}: length`).toBe(cpu.length);
  if (TOLERANCE.kind === 'bound' && !bound) {
    throw new Error(`${what}: on this adapter the comparison needs the twin's bound (TOLERANCE ${TOLERANCE.label}).`);
  }
  const r = compareTensor(gpu, cpu, bound, TOLERANCE.kind, options);
  measured.add(r, what);
  if (!r.pass) expect.fail(`${describeComparison(r, what)} (${TOLERANCE.label})`);
}

/** The GPU's global gradient norm against the twin's last one, at TOLERANCE (exact, or the twin's norm bound). */
export async function expectNormClose(
  gpu: { lastGradNorm(): Promise<number> },
  twin: CheckedReference,
  what: string,
): Promise<void> {
  const [g, c, b] = await Promise.all([gpu.lastGradNorm(), twin.lastGradNorm(), twin.bounds()]);
  expectClose(new Float32Array([g]), new Float32Array([c]), what, b ? [b.norm] : undefined);
}

/**
 * Parameters and state of a GPU optimizer against a twin's, both given: for comparisons where
 * either side was read earlier. `bounds` from the twin (`await twin.bounds()`) on non-exact adapters.
 */
export function expectStatesMatch(
  gpuParams: readonly Float32Array[],
  cpuParams: readonly Float32Array[],
  gpuState: RMSPropState | undefined,
  cpuState: RMSPropState | undefined,
  bounds: Awaited<ReturnType<CheckedReference['bounds']>>,
  what: string,
): void {
  const { worst, tensors } = compareAll(gpuParams, cpuParams, gpuState, cpuState, bounds, TOLERANCE);
  for (const { what: which, result } of tensors) measured.add(result, `${what}: ${which}`);
  if (worst.failures.length > 0) expect.fail(`${what} (${TOLERANCE.label}): ${worst.failures.slice(0, 3).join('; ')}`);
}

/**
 * One GPU array against its CPU counterpart, bit for bit (0 ULPs): on an exact adapter only. A
 * comparison anywhere else needs the twin's per-element bound, so there it throws, saying which
 * helper to use (`cpuTwin()` with `expectMatchesTwin()`, or `expectClose()` with the twin's bound).
 *
 * @deprecated Kept so that tests written before the bound still run where they are exact; use
 * `expectMatchesTwin` or `expectClose`.
 */
export function expectUlps(gpu: Float32Array, cpu: Float32Array, what: string): void {
  if (TOLERANCE.kind !== 'exact') {
    throw new Error(`${what}: expectUlps compares bit for bit, which holds only where measured; on this adapter ` +
      `(${TOLERANCE.label}) compare with cpuTwin() and expectMatchesTwin(), or expectClose() and the twin's bound.`);
  }
  expectClose(gpu, cpu, what);
}

/** The worst element of `gpu` against `cpu` in ULPs (`ulpError` with a floor per element or one for all). */
export function compareUlps(gpu: Float32Array, cpu: Float32Array, floor: number | ArrayLike<number> = DEFAULT_FLOOR): UlpReport {
  if (gpu.length !== cpu.length) {
    throw new RangeError(`compareUlps: ${gpu.length} GPU values against ${cpu.length} CPU values.`);
  }
  let worst = -1, index = -1;
  const g = bits(gpu), c = bits(cpu);
  for (let i = 0; i < gpu.length; i++) {
    if (g[i] === c[i]) continue;
    const e = ulpError(gpu[i]!, cpu[i]!, typeof floor === 'number' ? floor : Math.max(DEFAULT_FLOOR, floor[i]!));
    if (e > worst) { worst = e; index = i; }
  }
  if (index < 0) return { worst: 0, index: -1, gpu: NaN, cpu: NaN, count: gpu.length };
  return { worst, index, gpu: gpu[index]!, cpu: cpu[index]!, count: gpu.length };
}

export interface UlpReport {
  /** The largest error, in ULPs. */
  readonly worst: number;
  /** Where it is, and the two values there. */
  readonly index: number;
  readonly gpu: number;
  readonly cpu: number;
  /** Elements compared. */
  readonly count: number;
}

/**
 * Asserts two arrays are equal bit for bit (reporting the first difference): for what every
 * adapter promises exactly (round trips, resumed runs against uninterrupted ones on the same
 * device, padding and neighbours untouched, a skipped step), not for GPU against CPU.
 */
export function expectBitExact(actual: Float32Array | Uint32Array, expected: Float32Array | Uint32Array, what: string): void {
  const a = actual instanceof Float32Array ? bits(actual) : actual;
  const e = expected instanceof Float32Array ? bits(expected) : expected;
  expect(a.length, `${what}: length`).toBe(e.length);
  let first = -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== e[i]) { first = i; break; }
  if (first >= 0) expect.fail(`${what}: differs at [${first}] of ${a.length}: 0x${a[first]!.toString(16)} vs 0x${e[first]!.toString(16)}`);
}

function reportMeasured(): void {
  if (!process.env.ULP_REPORT) return;
  const used = measured.boundUsed > 0 ? `, at most ${(100 * measured.boundUsed).toPrecision(3)}% of the WGSL bound` : '';
  console.info(`GPU vs CPU (${TOLERANCE.label}): worst ${measured.worstUlps} ULPs (${measured.where}); ` +
    `${measured.elements} elements in ` +
    `${measured.comparisons} comparisons, ${measured.differing} not bit-exact${used}`);
}

// ---------------------------------------------------------------------------------------------
// GPU work

/**
 * Spies on every way the library could start GPU work (creating buffers, bind groups, layouts,
 * pipelines, shader modules or encoders; writing or submitting on the queue), for tests that a
 * refused call did none. `calls()` counts each, `count()` all of them; `restore()` removes the spies.
 */
export function spyOnGpuWork(device: GPUDevice): { calls: () => Record<string, number>; count: () => number; restore: () => void } {
  const spies: [string, MockInstance][] = [
    ...(['createBuffer', 'createBindGroup', 'createBindGroupLayout', 'createComputePipeline', 'createShaderModule', 'createCommandEncoder'] as const)
      .map((name): [string, MockInstance] => [name, vi.spyOn(device, name)]),
    ['queue.writeBuffer', vi.spyOn(device.queue, 'writeBuffer')],
    ['queue.submit', vi.spyOn(device.queue, 'submit')],
  ];
  return {
    calls: () => Object.fromEntries(spies.map(([name, spy]) => [name, spy.mock.calls.length])),
    count: () => spies.reduce((n, [, spy]) => n + spy.mock.calls.length, 0),
    restore: () => spies.forEach(([, spy]) => spy.mockRestore()),
  };
}

/** What {@link spyOnGpuWork}'s `calls()` reports when nothing was started. */
export const NO_GPU_WORK: Readonly<Record<string, number>> = Object.freeze({
  createBuffer: 0, createBindGroup: 0, createBindGroupLayout: 0, createComputePipeline: 0, createShaderModule: 0, createCommandEncoder: 0,
  'queue.writeBuffer': 0, 'queue.submit': 0,
});

/** Runs `attempt` under {@link spyOnGpuWork}: what it threw (undefined if nothing) and the GPU calls it made, by name. */
export function attemptWatchingGpuWork(device: GPUDevice, attempt: () => unknown): { error: unknown; calls: Record<string, number> } {
  const work = spyOnGpuWork(device);
  try {
    attempt();
    return { error: undefined, calls: work.calls() };
  } catch (error) {
    return { error, calls: work.calls() };
  } finally {
    work.restore();
  }
}
