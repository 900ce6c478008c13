/**
 * Shared harness of the GPU tests (vitest project `gpu`, Dawn in Node, SwiftShader without a GPU).
 *
 * - `useDevice()`: one device per test file, made in `beforeAll`, destroyed in `afterAll`; every
 *   uncaptured device error fails the test that was running (checked in `afterEach`).
 * - `gpuTest()` / `withErrorScopes()`: run a body inside validation, out-of-memory and internal
 *   error scopes and assert that each `popErrorScope()` is null.
 * - Buffer helpers: upload a Float32Array into a STORAGE | COPY_SRC | COPY_DST buffer, optionally at
 *   an offset inside a larger one; read any range back through a staging buffer of our own.
 * - A deterministic RNG and the data the tests train on.
 * - `expectUlps()`: GPU against CPU in ULPs of f32 bit patterns, reporting the worst element.
 */
import { afterAll, afterEach, beforeAll, expect, test, vi, type MockInstance } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import { detectMultiplyAdd, type MultiplyAdd } from '../../src/index.js';
import { mulberry32 } from '../../demo/problems/random.js';

// ---------------------------------------------------------------------------------------------
// Tolerance
// ---------------------------------------------------------------------------------------------

/**
 * How far (in ULPs, see `ulpError`) a GPU result may be from the CPU reference on SwiftShader, for
 * parameters after every step and every state slot, over all the tests of this project: none.
 *
 * Measured (`ULP_REPORT=1 npx vitest run --project gpu`): 0 ULPs, every element of every test
 * bit-exact, 10 steps deep. WGSL would allow more (division to 2.5 ULPs, sqrt through inverseSqrt),
 * but SwiftShader (Subzero, on x86) compiles f32 division and sqrt to the SSE instructions, which
 * round correctly, and its `fma` rounds the product and then the sum, which the reference follows
 * when told so (`MULTIPLY_ADD`, probed on the device with detectMultiplyAdd). src/reference.ts
 * rounds after every operation in the shader's order. So on SwiftShader the GPU is its CPU twin
 * bit for bit, and any difference at all is a change of the rule or of its order of operations on
 * one side only: the tightest honest tolerance is 0.
 */
export const SWIFTSHADER_TOLERANCE_ULPS = 0;

/**
 * The tolerance on a hardware adapter, where WGSL's allowances are used. Not measured here (no GPU
 * on this machine): tolerance.test.ts derives it by running the CPU reference against a copy of it
 * that rounds as loosely as WGSL permits (division off by up to 2 ULPs from correctly rounded, sqrt
 * by up to 4, multiply-adds fused at random) on the same variants and data as these tests. Most
 * elements stay within a few ULPs per step; the worst are ill-conditioned ones, where
 * `g + weightDecay * p` nearly cancels and a fused multiply-add changes the small result's
 * low bits, which RMSProp's normalization `g / sqrt(v)` then amplifies (and
 * v = (1 - alpha) * g * g squares): it reaches 1574 ULPs, on one element of one variant (maximize, weightDecay 0.01), at the first step. 2048 leaves a margin for other data.
 */
export const HARDWARE_TOLERANCE_ULPS = 2048;

/** The tolerance of this run's adapter (set when the file's device is made). */
export let TOLERANCE_ULPS = SWIFTSHADER_TOLERANCE_ULPS;

/** How this run's adapter rounds WGSL's `fma` (set when the file's device is made); CPU twins round the same. */
export let MULTIPLY_ADD: MultiplyAdd = 'fused';

/**
 * FLT_MIN, the smallest normal f32: values below it in magnitude (subnormals) count as 0, because
 * WGSL lets an implementation flush subnormal results to 0; and it is the least floor of every
 * comparison (see `ulpError`), callers raise it per element where a value comes out of a cancellation.
 */
export const DEFAULT_FLOOR = 2 ** -126;

// ---------------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------------

export interface GpuFixture {
  /** The file's device (valid inside tests and hooks). */
  readonly device: GPUDevice;
  /** Adapter description, for logs. */
  readonly description: string;
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
  };
  beforeAll(async () => {
    const found = await requestNodeDevice({ label: 'webgpu-rmsprop gpu tests' });
    device = found.device;
    description = found.description;
    TOLERANCE_ULPS = found.isSoftware ? SWIFTSHADER_TOLERANCE_ULPS : HARDWARE_TOLERANCE_ULPS;
    MULTIPLY_ADD = await detectMultiplyAdd(device);
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
// Comparison in ULPs
// ---------------------------------------------------------------------------------------------

const scratch = new DataView(new ArrayBuffer(4));

/** The f32 bit pattern of `x` as an integer that orders like the value (-0 and 0 are both 0). */
function ordered(x: number): number {
  scratch.setFloat32(0, x);
  const u = scratch.getUint32(0);
  return u & 0x80000000 ? -(u & 0x7fffffff) : u;
}

/** The ULP of f32 values of magnitude `x` (> 0): the gap from fround(x) to the next f32 up. */
function ulpOf(x: number): number {
  const f = Math.fround(x);
  scratch.setFloat32(0, f);
  scratch.setUint32(0, scratch.getUint32(0) + 1);
  return scratch.getFloat32(0) - f;
}

/**
 * The distance from `gpu` to `cpu`, in ULPs:
 * - both at least `floor` in magnitude and of the same sign: the number of f32 values between
 *   them (the difference of their bit patterns read as ordered integers), exactly;
 * - otherwise: |gpu - cpu| in ULPs of max(|gpu|, |cpu|, floor).
 * Subnormals count as 0 (see DEFAULT_FLOOR).
 * NaN against NaN, or the same infinity, is 0; NaN or an infinity against anything else is
 * Infinity (so NaN is told from Infinity and from a finite value).
 *
 * Why a floor above FLT_MIN for some elements: a result that comes out of a cancellation
 * (`p - lr * b` where the two nearly cancel, or `alpha * m + (1 - alpha) * g` as g changes sign)
 * carries the absolute error of its operands, a few ULPs of *them*, which can be thousands of
 * ULPs of the small result, and keeps it in later steps. The operands' magnitude is what the error is
 * relative to, so the twin passes, per element, the largest magnitude the CPU reference's value has
 * had so far (|p|, |v|, |m|, |b|) as its floor: an error counts in ULPs of the larger of the result
 * and what it was computed from. (On SwiftShader, tolerance 0, the floor changes nothing.)
 */
export function ulpError(gpu: number, cpu: number, floor = DEFAULT_FLOOR): number {
  if (!Number.isFinite(gpu) || !Number.isFinite(cpu)) {
    return Object.is(gpu, cpu) || (Number.isNaN(gpu) && Number.isNaN(cpu)) ? 0 : Infinity;
  }
  if (Math.abs(gpu) < DEFAULT_FLOOR) gpu = 0; // subnormals: flushed or not, both are fine
  if (Math.abs(cpu) < DEFAULT_FLOOR) cpu = 0;
  const a = Math.abs(gpu), c = Math.abs(cpu);
  if (a >= floor && c >= floor && Math.sign(gpu) === Math.sign(cpu)) return Math.abs(ordered(gpu) - ordered(cpu));
  return Math.abs(gpu - cpu) / ulpOf(Math.max(a, c, floor));
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

/** The worst element of `gpu` against `cpu` (which must have the same length). */
export function compareUlps(gpu: Float32Array, cpu: Float32Array, floor: number | Float32Array = DEFAULT_FLOOR): UlpReport {
  if (gpu.length !== cpu.length) throw new RangeError(`compareUlps: ${gpu.length} GPU values against ${cpu.length} CPU values.`);
  let worst = -1, index = -1;
  const g = bits(gpu), c = bits(cpu);
  for (let i = 0; i < gpu.length; i++) {
    if (g[i] === c[i]) continue; // the usual case, and the fast path for 67M elements
    const e = ulpError(gpu[i]!, cpu[i]!, typeof floor === 'number' ? floor : Math.max(DEFAULT_FLOOR, floor[i]!));
    if (e > worst) { worst = e; index = i; }
  }
  if (index < 0) return { worst: 0, index: -1, gpu: NaN, cpu: NaN, count: gpu.length };
  return { worst, index, gpu: gpu[index]!, cpu: cpu[index]!, count: gpu.length };
}

const measured = { worst: 0, where: 'every element bit-exact', elements: 0, differing: 0 };

/**
 * Asserts that `gpu` is within `tolerance` ULPs of `cpu` everywhere, that the CPU values are all
 * finite (a reference that went NaN would make any comparison pass), and records the worst error
 * for the run's report. On failure the message names the worst element.
 */
export function expectUlps(
  gpu: Float32Array,
  cpu: Float32Array,
  what: string,
  { tolerance = TOLERANCE_ULPS, floor = DEFAULT_FLOOR }: { tolerance?: number; floor?: number | Float32Array } = {},
): UlpReport {
  expect(gpu.length, `${what}: length`).toBe(cpu.length);
  const firstNonFinite = cpu.findIndex((x) => !Number.isFinite(x));
  expect(firstNonFinite, `${what}: the CPU reference has a non-finite value at [${firstNonFinite}]`).toBe(-1);
  const r = compareUlps(gpu, cpu, floor);
  measured.elements += r.count;
  if (r.worst > 0) measured.differing++;
  if (r.worst > measured.worst) {
    measured.worst = r.worst;
    measured.where = `${what}[${r.index}]: gpu ${r.gpu}, cpu ${r.cpu}`;
  }
  if (r.worst > tolerance) {
    expect.fail(`${what}: ${r.worst} ULPs > ${tolerance} at [${r.index}] of ${r.count}: gpu ${r.gpu}, cpu ${r.cpu}`);
  }
  return r;
}

/** Asserts two arrays are equal bit for bit (reporting the first difference). */
export function expectBitExact(actual: Float32Array | Uint32Array, expected: Float32Array | Uint32Array, what: string): void {
  const a = actual instanceof Float32Array ? bits(actual) : actual;
  const e = expected instanceof Float32Array ? bits(expected) : expected;
  expect(a.length, `${what}: length`).toBe(e.length);
  let first = -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== e[i]) { first = i; break; }
  if (first >= 0) expect.fail(`${what}: differs at [${first}] of ${a.length}: 0x${a[first]!.toString(16)} vs 0x${e[first]!.toString(16)}`);
}

function reportMeasured(): void {
  if (process.env.ULP_REPORT) console.info(`worst GPU vs CPU: ${measured.worst} ULPs (${measured.where}); ${measured.elements} elements compared, ${measured.differing} comparisons not bit-exact`);
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
