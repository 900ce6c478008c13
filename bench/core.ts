/**
 * The benchmark itself, the same in Node (Dawn) and in the browser page: for each tensor set and
 * variant, our optimizer (one buffer pair per tensor, and one ParamArena), TF.js's
 * `tf.train.rmsprop` on the same GPUDevice, the CPU reference, and a plain device copy, measured
 * in turn batch by batch (so that load from elsewhere on the machine falls on all of them alike).
 */
import type * as TF from '@tensorflow/tfjs-core';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ParamArena, RMSProp, ReferenceRMSProp, type ParamSpec } from '../src/index.js';
import { GpuTimer, median } from './timing.js';
import { VARIANTS, bytesPerParam, paramCount, singleTensor, transformer, type Layout, type TensorSet, type Variant } from './workloads.js';

/** TF.js, as the Node script or the page loaded it. */
export interface TfjsModules {
  readonly tf: typeof TF;
  readonly WebGPUBackend: typeof WebGPUBackend;
}

/** Where the benchmark runs. */
export interface BenchEnvironment {
  /** 'Node (Dawn)' or 'Chromium 1xx'. */
  readonly name: string;
  readonly device: GPUDevice;
  /** The adapter, in words (vendor, architecture, device, description). */
  readonly adapter: string;
  readonly isSoftware: boolean;
  /** TF.js, or undefined to leave its column out. */
  readonly tfjs?: TfjsModules;
  readonly now: () => number;
  readonly log: (line: string) => void;
}

export type WorkloadName = 'single' | 'transformer' | 'large';

/** How long and how big. */
export interface BenchConfig {
  /** Workload (a)'s size. */
  readonly singleSize: number;
  /** Which workloads to run (all when missing): 'single' (a), 'transformer' (b), 'large'. */
  readonly only?: readonly WorkloadName[];
  /** A third workload, one tensor of this many elements (64Mi with --large, for real GPUs); 0: none. */
  readonly largeSize: number;
  /** Workload (b)'s shape (see `transformer`). */
  readonly transformer: Parameters<typeof transformer>[0];
  /** Timed batches per GPU measurement; the median is reported. */
  readonly batches: number;
  /** Timed batches of the CPU reference (it is slow). */
  readonly cpuBatches: number;
  /** Steps per batch are chosen so that a batch takes about this long (at least 1 step). */
  readonly targetBatchMs: number;
  readonly maxStepsPerBatch: number;
  /** Also replay our optimizer's steps on the CPU reference and compare bit for bit (small sizes only). */
  readonly verify: boolean;
  /** Bytes copied to measure the copy bandwidth: at least this, and at least the largest workload's parameters. */
  readonly copyBytes: number;
}

/** The full run: under ~2 minutes per environment on SwiftShader with two cores. */
export const FULL_CONFIG: BenchConfig = {
  singleSize: 16 * 1024 * 1024,
  largeSize: 0,
  transformer: {},
  batches: 5,
  cpuBatches: 3,
  targetBatchMs: 200,
  maxStepsPerBatch: 200,
  verify: false,
  copyBytes: 64 * 1024 * 1024, // past any CPU cache, so that SwiftShader's copy is a memory copy
};

/** A smoke run: the same workloads, fewer and shorter batches. */
export const QUICK_CONFIG: BenchConfig = { ...FULL_CONFIG, batches: 3, cpuBatches: 1, targetBatchMs: 50 };

/** Tiny shapes for the unit test, which checks the code path, not the speed. */
export const TINY_CONFIG: BenchConfig = {
  singleSize: 1001,
  largeSize: 0,
  transformer: { layers: 1, d: 8, ff: 16, vocab: 32 },
  batches: 2,
  cpuBatches: 1,
  targetBatchMs: 2,
  maxStepsPerBatch: 4,
  verify: true,
  copyBytes: 64 * 1024,
};

/**
 * The most f32 elements of one tensor that a device binds whole (TF.js binds each variable as one
 * storage binding): the binding and buffer limits, rounded down to whole Mi elements when that large.
 *
 * @example
 * ```ts
 * tensorElementsThatFit(device.limits); // 33554432 on lavapipe (a 128 MiB binding)
 * ```
 */
export function tensorElementsThatFit(limits: { maxStorageBufferBindingSize: number; maxBufferSize: number }): number {
  const elements = Math.floor(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 4);
  return elements >= 1 << 20 ? Math.floor(elements / (1 << 20)) * (1 << 20) : Math.floor(elements / 256) * 256;
}

/** A measurement: the median over batches of each batch's time divided by its steps. */
export interface Stat {
  readonly msPerStep: number;
  readonly minMsPerStep: number;
  readonly maxMsPerStep: number;
  /** Median wall-clock time per step (equal to msPerStep when timed by the wall clock). */
  readonly wallMsPerStep: number;
  readonly batches: number;
  readonly stepsPerBatch: number;
  readonly timing: 'timestamp-query' | 'wall clock';
}

/** One tensor set under one variant. */
export interface GroupResult {
  readonly set: string;
  readonly tensors: number;
  readonly params: number;
  readonly variant: string;
  /** What a step must move (bytesPerParam × params). */
  readonly bytesPerStep: number;
  /** Bytes read plus written by one copy, and its time. */
  readonly copy: Stat & { readonly bytes: number };
  readonly ours: Partial<Record<Layout, Stat>>;
  readonly tfjs?: Stat;
  readonly reference: Stat;
  /** With `verify`: whether each layout's parameters equal the CPU reference's after the same steps. */
  readonly verified?: Partial<Record<Layout, boolean>>;
}

export interface BenchReport {
  readonly environment: string;
  readonly adapter: string;
  readonly isSoftware: boolean;
  readonly timing: 'timestamp-query' | 'wall clock';
  readonly groups: readonly GroupResult[];
  readonly warnings: readonly string[];
  readonly durationMs: number;
}

/** A thing to time: `run(k)` records (and submits, or computes) k steps. */
export interface Runner {
  readonly name: string;
  readonly cpu: boolean;
  run(k: number): void;
  flush(): void;
  dispose(): void;
}

/** Parameters and gradients of a tensor set, the same for every runner (seeded). */
interface SetData {
  readonly params: Float32Array<ArrayBuffer>[];
  readonly grads: Float32Array<ArrayBuffer>[];
}

function makeData(set: TensorSet, seed: number): SetData {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const fill = (n: number, scale: number, offset: number) => {
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (next() - 0.5) * scale + offset * Math.sign(next() - 0.5);
    return x;
  };
  // Gradients bounded away from 0 (no subnormals in v on a CPU), both signs.
  return { params: set.tensors.map((t) => fill(t.size, 0.2, 0)), grads: set.tensors.map((t) => fill(t.size, 0.02, 0.01)) };
}

const USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

/** Our optimizer over `set`: a buffer pair per tensor, or one ParamArena. */
function oursRunner(device: GPUDevice, set: TensorSet, data: SetData, variant: Variant, layout: Layout) {
  const destroy: (() => void)[] = [];
  let specs: ParamSpec[];
  if (layout === 'arena') {
    const arena = new ParamArena(device, set.tensors, 'bench.arena');
    destroy.push(() => arena.destroy());
    arena.tensors.forEach((t, i) => {
      device.queue.writeBuffer(arena.params, t.offset, data.params[i]!);
      device.queue.writeBuffer(arena.grads, t.offset, data.grads[i]!);
    });
    specs = arena.specs(); // as they are: they carry the arena's mark, which lets RMSProp make one dispatch
  } else {
    specs = set.tensors.map((t, i) => {
      const param = device.createBuffer({ label: `bench.${t.name}.param`, size: t.size * 4, usage: USAGE });
      const grad = device.createBuffer({ label: `bench.${t.name}.grad`, size: t.size * 4, usage: USAGE });
      device.queue.writeBuffer(param, 0, data.params[i]!);
      device.queue.writeBuffer(grad, 0, data.grads[i]!);
      destroy.push(() => { param.destroy(); grad.destroy(); });
      return { param, grad, name: t.name };
    });
  }
  const optimizer = new RMSProp(device, specs, variant.options);
  destroy.unshift(() => optimizer.destroy());
  const runner: Runner & { optimizer: RMSProp } = {
    name: layout === 'arena' ? 'ours (ParamArena)' : 'ours',
    cpu: false,
    optimizer,
    run(k) { for (let i = 0; i < k; i++) optimizer.step(); },
    flush() {},
    dispose() { destroy.forEach((d) => d()); },
  };
  return runner;
}

let tfjsRunnerCount = 0;

/** TF.js's `tf.train.rmsprop` on the same device: a variable per tensor, fixed gradient tensors. */
function tfjsRunner(tfjs: TfjsModules, set: TensorSet, data: SetData, variant: Variant): Runner {
  const { tf } = tfjs;
  const id = tfjsRunnerCount++;
  const before = tf.memory().numTensors;
  const variables = set.tensors.map((t, i) => {
    const initial = tf.tensor1d(data.params[i]!);
    const variable = tf.variable(initial, false, `bench${id}/${t.name}`);
    initial.dispose(); // the variable keeps the data
    return variable;
  });
  const grads: Record<string, TF.Tensor> = {};
  set.tensors.forEach((_, i) => { grads[variables[i]!.name] = tf.tensor1d(data.grads[i]!); });
  const v = variant.tfjs;
  const optimizer = tf.train.rmsprop(v.learningRate, v.decay, v.momentum, v.epsilon, v.centered);
  const backend = tf.backend() as WebGPUBackend;
  return {
    name: 'TF.js',
    cpu: false,
    run(k) { for (let i = 0; i < k; i++) optimizer.applyGradients(grads); },
    // TF.js submits every 15 dispatches; the rest waits in its open pass until something reads.
    // This is what its own reads do first (getBufferData).
    flush() {
      backend.ensureCommandEncoderReady();
      backend.endComputePassEncoder();
      backend.submitQueue();
    },
    dispose() {
      optimizer.dispose();
      variables.forEach((x) => x.dispose());
      Object.values(grads).forEach((x) => x.dispose());
      const leaked = tf.memory().numTensors - before;
      if (leaked !== 0) throw new Error(`TF.js runner leaked ${leaked} tensors`);
    },
  };
}

/** The CPU reference (PyTorch's rounding) over copies of the same data. */
function referenceRunner(set: TensorSet, data: SetData, variant: Variant): Runner & { optimizer: ReferenceRMSProp } {
  const optimizer = new ReferenceRMSProp(set.tensors.map((t, i) => ({ param: data.params[i]!.slice(), grad: data.grads[i]!, name: t.name })), variant.options);
  return {
    name: 'CPU reference',
    cpu: true,
    optimizer,
    run(k) { for (let i = 0; i < k; i++) optimizer.step(); },
    flush() {},
    dispose() { optimizer.destroy(); },
  };
}

/** copyBufferToBuffer of `bytes`: the device's own bandwidth, to compare the step with. */
export function copyRunner(device: GPUDevice, bytes: number): Runner {
  const src = device.createBuffer({ label: 'bench.copy.src', size: bytes, usage: USAGE });
  const dst = device.createBuffer({ label: 'bench.copy.dst', size: bytes, usage: USAGE });
  return {
    name: 'copy',
    cpu: false,
    run(k) {
      const encoder = device.createCommandEncoder({ label: 'bench.copy' });
      for (let i = 0; i < k; i++) encoder.copyBufferToBuffer(src, 0, dst, 0, bytes);
      device.queue.submit([encoder.finish()]);
    },
    flush() {},
    dispose() { src.destroy(); dst.destroy(); },
  };
}

/**
 * Times `runners` in turn, batch by batch: each is warmed up (twice: the first step builds
 * pipelines), its steps per batch are chosen from the second warm-up, then every round times one
 * batch of each.
 */
export async function measure(
  env: Pick<BenchEnvironment, 'now'>,
  timer: GpuTimer,
  config: Pick<BenchConfig, 'batches' | 'cpuBatches' | 'targetBatchMs' | 'maxStepsPerBatch'>,
  runners: readonly Runner[],
): Promise<Stat[]> {
  const batch = async (r: Runner, k: number) => {
    if (!r.cpu) return timer.time(() => r.run(k), () => r.flush());
    const start = env.now();
    r.run(k);
    return { wallMs: env.now() - start };
  };
  const plans = [];
  for (const r of runners) {
    await batch(r, 1);
    const t = await batch(r, 1);
    const est = Math.max(t.gpuMs ?? t.wallMs, 1e-3);
    plans.push({ k: Math.max(1, Math.min(config.maxStepsPerBatch, Math.round(config.targetBatchMs / est))), times: [] as { wallMs: number; gpuMs?: number }[] });
  }
  const rounds = Math.max(config.batches, config.cpuBatches);
  for (let round = 0; round < rounds; round++) {
    for (const [i, r] of runners.entries()) {
      if (round >= (r.cpu ? config.cpuBatches : config.batches)) continue;
      plans[i]!.times.push(await batch(r, plans[i]!.k));
    }
  }
  return plans.map(({ k, times }) => {
    const gpu = times.every((t) => t.gpuMs !== undefined);
    const perStep = times.map((t) => (gpu ? t.gpuMs! : t.wallMs) / k);
    return {
      msPerStep: median(perStep),
      minMsPerStep: Math.min(...perStep),
      maxMsPerStep: Math.max(...perStep),
      wallMsPerStep: median(times.map((t) => t.wallMs / k)),
      batches: times.length,
      stepsPerBatch: k,
      timing: gpu ? 'timestamp-query' : 'wall clock',
    };
  });
}

/** Whether each of our optimizers' parameters equal the reference's after the same steps. */
async function verifyAgainstReference(set: TensorSet, data: SetData, variant: Variant, ours: { layout: Layout; optimizer: RMSProp }[], multiplyAdd: 'fused' | 'separate') {
  const verified: Partial<Record<Layout, boolean>> = {};
  for (const { layout, optimizer } of ours) {
    const reference = new ReferenceRMSProp(set.tensors.map((t, i) => ({ param: data.params[i]!.slice(), grad: data.grads[i]!, name: t.name })), variant.options, { multiplyAdd });
    for (let i = 0; i < optimizer.stepCount; i++) reference.step();
    const [gpu, cpu] = [await optimizer.readParams(), await reference.readParams()];
    verified[layout] = gpu.every((x, i) => x.length === cpu[i]!.length && x.every((value, j) => Object.is(value, cpu[i]![j])));
  }
  return verified;
}

/**
 * Runs every workload and variant on `env.device`, and returns the figures (`formatReport` prints them).
 *
 * @example
 * ```ts
 * const report = await runBench({ name: 'Node (Dawn)', device, adapter, isSoftware, now: () => performance.now(), log: console.log }, QUICK_CONFIG);
 * console.log(formatReport(report));
 * ```
 */
export async function runBench(env: BenchEnvironment, config: BenchConfig, options: { multiplyAdd?: 'fused' | 'separate' } = {}): Promise<BenchReport> {
  const started = env.now();
  const { device } = env;
  const timer = new GpuTimer(device, device.features.has('timestamp-query'), env.now);
  const warnings: string[] = [];
  if (env.tfjs) {
    const backend = env.tfjs.tf.backend() as WebGPUBackend;
    if (env.tfjs.tf.getBackend() !== 'webgpu' || backend.device !== device) throw new Error('TF.js must run on the WebGPU backend, on the benchmark\'s own GPUDevice.');
  }
  // One tensor is bound whole by TF.js (and by a copy kernel): no larger than the device's binding.
  const fit = (size: number, what: string) => {
    const most = tensorElementsThatFit(device.limits);
    if (size <= most) return size;
    warnings.push(`${what}: ${size} elements do not fit one storage binding here (maxStorageBufferBindingSize ` +
      `${device.limits.maxStorageBufferBindingSize} bytes): sized down to ${most}`);
    env.log(`${env.name}: ${warnings.at(-1)}`);
    return most;
  };
  const named: [WorkloadName, TensorSet][] = [['single', singleTensor(fit(config.singleSize, 'single tensor'))], ['transformer', transformer(config.transformer)]];
  if (config.largeSize > 0) named.push(['large', singleTensor(fit(config.largeSize, 'large tensor'))]);
  const sets = named.filter(([name]) => !config.only || config.only.includes(name)).map(([, set]) => set);
  // One size for every group and whatever --only picks, so that "% copy" compares alike.
  const largest = Math.max(...named.map(([, set]) => paramCount(set))) * 4;
  const copyBytes = Math.min(Math.ceil(Math.max(config.copyBytes, largest) / 256) * 256, device.limits.maxBufferSize);
  const groups: GroupResult[] = [];
  try {
    for (const set of sets) {
      const data = makeData(set, 1234);
      const params = paramCount(set);
      for (const variant of VARIANTS) {
        env.log(`${env.name}: ${set.name}, ${variant.name} ...`);
        const layouts: Layout[] = set.tensors.length > 1 ? ['separate', 'arena'] : ['separate'];
        const ours: { layout: Layout; runner: ReturnType<typeof oursRunner> }[] = [];
        const runners: Runner[] = [];
        // Opened before anything is made, so that the first error (the cause) is the one reported.
        device.pushErrorScope('validation');
        let stats: Stat[] = [];
        let failure: unknown;
        try {
          runners.push(copyRunner(device, copyBytes));
          for (const layout of layouts) {
            ours.push({ layout, runner: oursRunner(device, set, data, variant, layout) });
            runners.push(ours[ours.length - 1]!.runner);
          }
          if (env.tfjs) runners.push(tfjsRunner(env.tfjs, set, data, variant));
          runners.push(referenceRunner(set, data, variant));
          stats = await measure(env, timer, config, runners);
        } catch (error) {
          failure = error ?? new Error('unknown failure');
        }
        const error = await device.popErrorScope();
        try {
          if (error) throw new Error(`WebGPU validation error during the benchmark: ${error.message}`, { cause: failure });
          if (failure !== undefined) throw failure;
          const at = (name: string) => stats[runners.findIndex((r) => r.name === name)];
          const oursStats: Partial<Record<Layout, Stat>> = {};
          ours.forEach((o) => { oursStats[o.layout] = at(o.runner.name)!; });
          groups.push({
            set: set.name,
            tensors: set.tensors.length,
            params,
            variant: variant.name,
            bytesPerStep: bytesPerParam(variant.options) * params,
            copy: { ...at('copy')!, bytes: 2 * copyBytes },
            ours: oursStats,
            ...(env.tfjs ? { tfjs: at('TF.js')! } : {}),
            reference: at('CPU reference')!,
            ...(config.verify
              ? { verified: await verifyAgainstReference(set, data, variant, ours.map((o) => ({ layout: o.layout, optimizer: o.runner.optimizer })), options.multiplyAdd ?? 'fused') }
              : {}),
          });
        } finally {
          runners.forEach((r) => r.dispose());
        }
      }
    }
  } finally {
    timer.destroy();
  }
  if (!env.tfjs) warnings.push('TF.js was not loaded: no TF.js column.');
  return {
    environment: env.name,
    adapter: env.adapter,
    isSoftware: env.isSoftware,
    timing: timer.timestamps ? 'timestamp-query' : 'wall clock',
    groups,
    warnings,
    durationMs: env.now() - started,
  };
}
