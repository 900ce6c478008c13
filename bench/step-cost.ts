/**
 * What a step costs, as a GPU runs it (part of `npm run bench`):
 * - the roofline: the ParamArena step against a WGSL kernel that moves exactly the same bytes
 *   (bench/same-bytes.wgsl) and against copyBufferToBuffer, plain and centered + momentum, and the
 *   step with clipGradNorm + skipNonFinite against the plain one, timed in turn batch by batch;
 * - the host: dispatches and passes per step, and the CPU time of `step()` for 42 and for 1,000
 *   small tensors (a buffer pair each, and one ParamArena), beside TF.js's `applyGradients` on the same set.
 */
import type * as TF from '@tensorflow/tfjs-core';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ParamArena, RMSProp, type ParamSpec, type RMSPropConfig } from '../src/index.js';
import { copyRunner, measure, type BenchEnvironment, type Runner, type Stat } from './core.js';
import { GpuTimer, median } from './timing.js';
import { formatCount, transformer, type TensorSet } from './workloads.js';
import sameBytesWgsl from './same-bytes.wgsl?raw';

const USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM = 0x40 | 0x08;

/** The goals of the step-cost issue, on every adapter. */
export const GOALS = { plainOfSameBytes: 0.8, clipOverPlain: 1.3 } as const;

export interface StepCostConfig {
  readonly batches: number;
  readonly targetBatchMs: number;
  readonly maxStepsPerBatch: number;
  /** Steps recorded per host-time sample, and samples (the median is reported). */
  readonly hostSteps: number;
  readonly hostSamples: number;
  /**
   * The host-time sets: 42 tensors and `manyTensors` tensors, each of `hostSize` elements (the host's
   * work does not depend on a tensor's size; small ones let a CPU adapter drain the steps quickly).
   */
  readonly manyTensors: number;
  readonly hostSize: number;
  readonly transformer: Parameters<typeof transformer>[0];
}

export const STEP_COST_CONFIG: StepCostConfig = {
  batches: 5,
  targetBatchMs: 200,
  maxStepsPerBatch: 200,
  hostSteps: 100,
  hostSamples: 5,
  manyTensors: 1000,
  hostSize: 1024,
  transformer: {},
};
export const STEP_COST_QUICK: StepCostConfig = {
  ...STEP_COST_CONFIG,
  batches: 3,
  targetBatchMs: 50,
  hostSteps: 30,
  hostSamples: 3,
};
export const STEP_COST_TINY: StepCostConfig = {
  batches: 1,
  targetBatchMs: 2,
  maxStepsPerBatch: 2,
  hostSteps: 3,
  hostSamples: 1,
  manyTensors: 20,
  hostSize: 64,
  transformer: { layers: 1, d: 8, ff: 16, vocab: 32 },
};

export interface RooflineRow {
  readonly name: string;
  /** Bytes per parameter the row moves. */
  readonly bytesPerParam: number;
  readonly ms: number;
  readonly gbPerS: number;
}

export interface HostRow {
  readonly set: string;
  readonly layout: 'separate' | 'arena';
  readonly options: string;
  readonly dispatches: number;
  readonly passes: number;
  /** CPU µs of one `step(encoder)` (recording only). */
  readonly recordUs: number;
  /** CPU µs of one `step()` (recording, finishing and submitting its own command buffer). */
  readonly submitUs: number;
  /** CPU µs of TF.js's `applyGradients` on the same tensors (plain rows only). */
  readonly tfjsUs?: number;
}

export interface StepCostReport {
  readonly environment: string;
  readonly adapter: string;
  readonly params: number;
  readonly roofline: readonly RooflineRow[];
  /** Plain arena step over the same-bytes kernel's time: the share of the roofline reached. */
  readonly plainOfSameBytes: number;
  readonly centeredOfSameBytes: number;
  /** clipGradNorm + skipNonFinite arena step over the plain arena step. */
  readonly clipOverPlain: number;
  readonly host: readonly HostRow[];
}

/** A kernel of bench/same-bytes.wgsl over `count` elements, one pass a step, as our step records them. */
function sameBytesRunner(device: GPUDevice, count: number, slots: number, readGradFirst: boolean): Runner {
  const count4 = Math.ceil(count / 4);
  const module = device.createShaderModule({ label: 'bench.sameBytes', code: sameBytesWgsl });
  const buffer = (label: string, bytes: number) => device.createBuffer({
    label: `bench.sameBytes.${label}`,
    size: bytes,
    usage: USAGE,
  });
  const p = buffer('p', count4 * 16), g = buffer('g', count4 * 16),
    state = buffer('state', slots * count4 * 16), sink = buffer('sink', 16);
  const size = device.createBuffer({ label: 'bench.sameBytes.size', size: 16, usage: UNIFORM });
  device.queue.writeBuffer(size, 0, new Uint32Array([count4, count4, 0, 0]));
  const make = (entryPoint: string) => {
    const pipeline = device.createComputePipeline({
      label: `bench.sameBytes.${entryPoint}[${slots}]`,
      layout: 'auto',
      compute: { module, entryPoint, constants: { SLOTS: slots } },
    });
    const entries = entryPoint === 'moveStep'
      ? [
        { binding: 0, resource: { buffer: size } },
        { binding: 1, resource: { buffer: p } },
        { binding: 2, resource: { buffer: g } },
        { binding: 3, resource: { buffer: state } },
      ]
      : [
        { binding: 0, resource: { buffer: size } },
        { binding: 2, resource: { buffer: g } },
        { binding: 4, resource: { buffer: sink } },
      ];
    return {
      pipeline,
      bindGroup: device.createBindGroup({
        label: `bench.sameBytes.${entryPoint}`,
        layout: pipeline.getBindGroupLayout(0),
        entries,
      }),
    };
  };
  const kernels = [...(readGradFirst ? [make('readGrad')] : []), make('moveStep')];
  const groups = Math.ceil(count4 / 256), max = device.limits.maxComputeWorkgroupsPerDimension;
  const y = groups <= max ? 1 : Math.ceil(groups / max), x = Math.ceil(groups / y);
  return {
    name: `same bytes, ${slots} slot${slots > 1 ? 's' : ''}${readGradFirst ? ' + a read of g' : ''}`,
    cpu: false,
    run(k) {
      const encoder = device.createCommandEncoder({ label: 'bench.sameBytes' });
      for (let i = 0; i < k; i++) {
        const pass = encoder.beginComputePass({ label: 'bench.sameBytes' });
        for (const { pipeline, bindGroup } of kernels) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(x, y);
        }
        pass.end();
      }
      device.queue.submit([encoder.finish()]);
    },
    flush() {},
    dispose() { [p, g, state, sink, size].forEach((b) => b.destroy()); },
  };
}

/** Tensors of `set` in a ParamArena or in buffer pairs of their own, with small gradients. */
function placeTensors(
  device: GPUDevice,
  set: TensorSet,
  layout: 'separate' | 'arena',
): { specs: ParamSpec[]; destroy: () => void } {
  const fill = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => scale * Math.sin(i * 0.7 + 1));
  if (layout === 'arena') {
    const arena = new ParamArena(device, set.tensors, 'bench.arena');
    arena.tensors.forEach((t) => {
      device.queue.writeBuffer(arena.params, t.offset, fill(t.size, 0.1));
      device.queue.writeBuffer(arena.grads, t.offset, fill(t.size, 0.01));
    });
    return { specs: arena.specs(), destroy: () => arena.destroy() };
  }
  const buffers: GPUBuffer[] = [];
  const specs = set.tensors.map((t) => {
    const param = device.createBuffer({ label: `bench.${t.name}.param`, size: t.size * 4, usage: USAGE });
    const grad = device.createBuffer({ label: `bench.${t.name}.grad`, size: t.size * 4, usage: USAGE });
    device.queue.writeBuffer(param, 0, fill(t.size, 0.1));
    device.queue.writeBuffer(grad, 0, fill(t.size, 0.01));
    buffers.push(param, grad);
    return { param, grad, name: t.name };
  });
  return { specs, destroy: () => buffers.forEach((b) => b.destroy()) };
}

function oursRunner(
  device: GPUDevice,
  set: TensorSet,
  options: RMSPropConfig,
  name: string,
): Runner & { optimizer: RMSProp } {
  const placed = placeTensors(device, set, 'arena');
  const optimizer = new RMSProp(device, placed.specs, options);
  return {
    name,
    cpu: false,
    optimizer,
    run(k) {
      const encoder = device.createCommandEncoder({ label: 'bench.ours' });
      for (let i = 0; i < k; i++) optimizer.step(encoder);
      device.queue.submit([encoder.finish()]);
    },
    flush() {},
    dispose() { optimizer.destroy(); placed.destroy(); },
  };
}

const rate = (bytesPerParam: number, params: number, s: Stat) => (bytesPerParam * params) / (s.msPerStep * 1e6);

/** The roofline half: side by side, in turn batch by batch, on the transformer's tensors in one arena. */
async function roofline(env: BenchEnvironment, timer: GpuTimer, config: StepCostConfig, set: TensorSet) {
  const { device } = env;
  const arenaElements = new ParamArena(device, set.tensors, 'bench.arena.size');
  const count = arenaElements.params.size / 4; // padding included: what the one dispatch covers
  arenaElements.destroy();
  const cases: { runner: Runner; bytes: number }[] = [
    { runner: copyRunner(device, Math.ceil((count * 10) / 256) * 256), bytes: 20 },
    { runner: sameBytesRunner(device, count, 1, false), bytes: 20 },
    { runner: oursRunner(device, set, {}, 'ours, ParamArena, plain'), bytes: 20 },
    { runner: sameBytesRunner(device, count, 3, false), bytes: 36 },
    {
      runner: oursRunner(device, set, { centered: true, momentum: 0.9 }, 'ours, ParamArena, centered + momentum 0.9'),
      bytes: 36,
    },
    { runner: sameBytesRunner(device, count, 1, true), bytes: 24 },
    {
      runner: oursRunner(
        device,
        set,
        { clipGradNorm: 1, skipNonFinite: true },
        'ours, ParamArena, clipGradNorm + skipNonFinite',
      ),
      bytes: 24,
    },
  ];
  device.pushErrorScope('validation');
  let stats: Stat[];
  try {
    stats = await measure(env, timer, { ...config, cpuBatches: 0 }, cases.map((c) => c.runner));
  } finally {
    const error = await device.popErrorScope();
    cases.forEach((c) => c.runner.dispose());
    if (error) throw new Error(`WebGPU validation error in the step-cost benchmark: ${error.message}`);
  }
  const rows: RooflineRow[] = cases.map((c, i) => ({
    name: c.runner.name,
    bytesPerParam: c.bytes,
    ms: stats[i]!.msPerStep,
    gbPerS: rate(c.bytes, count, stats[i]!),
  }));
  return {
    count,
    rows,
    plainOfSameBytes: rows[1]!.ms / rows[2]!.ms,
    centeredOfSameBytes: rows[3]!.ms / rows[4]!.ms,
    clipOverPlain: rows[6]!.ms / rows[2]!.ms,
  };
}

/**
 * A command encoder whose first pass is already recorded, outside the timing: Dawn does deferred work
 * (recycling what completed submissions used) on the first pass of an encoder after a submission
 * has finished, 8 to 38 ms at times on lavapipe and SwiftShader here (measured with an empty pass),
 * whoever records it. That is a cost of the frame, not of the optimizer's step.
 */
function freshEncoder(device: GPUDevice): GPUCommandEncoder {
  const encoder = device.createCommandEncoder({ label: 'bench.host' });
  encoder.beginComputePass({ label: 'bench.host.firstPass' }).end();
  return encoder;
}

/** Median CPU µs per call of `call` over `samples` samples of `n` calls, with `between` after each sample. */
async function hostUs(
  now: () => number,
  n: number,
  samples: number,
  call: () => void,
  between: () => Promise<void>,
): Promise<number> {
  const per: number[] = [];
  for (let s = 0; s < samples; s++) {
    const start = now();
    for (let i = 0; i < n; i++) call();
    per.push(((now() - start) * 1000) / n);
    await between();
  }
  return median(per);
}

async function hostTimes(
  env: BenchEnvironment,
  config: StepCostConfig,
  sets: readonly TensorSet[],
): Promise<HostRow[]> {
  const { device } = env;
  const rows: HostRow[] = [];
  const done = () => device.queue.onSubmittedWorkDone();
  for (const set of sets) {
    for (const layout of ['separate', 'arena'] as const) {
      for (const [label, options] of [
        ['plain', {}],
        ['clipGradNorm + skipNonFinite', { clipGradNorm: 1, skipNonFinite: true }],
      ] as const) {
        const started = env.now();
        const placed = placeTensors(device, set, layout);
        const optimizer = new RMSProp(device, placed.specs, options);
        optimizer.step();
        await done();
        const t0 = env.now();
        optimizer.step();
        await done();
        const stepMs = env.now() - t0;
        // Enough steps to time the host well, few enough that the GPU (a CPU, on SwiftShader) drains them soon.
        const n = Math.max(
          3,
          Math.min(config.hostSteps, Math.round(config.targetBatchMs / Math.max(stepMs, 1e-3))),
        );
        let encoder = freshEncoder(device);
        const recordUs = await hostUs(env.now, n, config.hostSamples, () => optimizer.step(encoder), async () => {
          device.queue.submit([encoder.finish()]);
          await done();
          encoder = freshEncoder(device);
        });
        encoder.finish();
        const submitUs = await hostUs(env.now, n, config.hostSamples, () => optimizer.step(), done);
        const tfjsUs = env.tfjs && label === 'plain' && layout === 'separate'
          ? await tfjsHostUs(env, config, set)
          : undefined;
        const { dispatches, passes } = optimizer.dispatchesPerStep;
        rows.push({
          set: set.name,
          layout,
          options: label,
          dispatches,
          passes,
          recordUs,
          submitUs,
          ...(tfjsUs !== undefined ? { tfjsUs } : {}),
        });
        env.log(`  ${set.name}, ${layout}, ${label}: ${((env.now() - started) / 1000).toFixed(1)} s`);
        optimizer.destroy();
        placed.destroy();
      }
    }
  }
  return rows;
}

/** CPU µs of one `tf.train.rmsprop().applyGradients` over `set` (a variable per tensor, fixed gradients). */
async function tfjsHostUs(env: BenchEnvironment, config: StepCostConfig, set: TensorSet): Promise<number> {
  const { tf } = env.tfjs! as { tf: typeof TF };
  const backend = tf.backend() as WebGPUBackend;
  const variables = set.tensors.map((t, i) => {
    const initial = tf.fill([t.size], 0.1);
    const variable = tf.variable(initial, true, `bench.host${i}.${t.name}`);
    initial.dispose(); // the variable keeps the data
    return variable;
  });
  const grads: Record<string, TF.Tensor> = {};
  variables.forEach((v) => { grads[v.name] = tf.fill(v.shape, 0.01); });
  const optimizer = tf.train.rmsprop(1e-3, 0.9, 0, 1e-7, false);
  const flush = async () => {
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.submitQueue();
    await env.device.queue.onSubmittedWorkDone();
  };
  optimizer.applyGradients(grads);
  await flush();
  const n = Math.max(2, Math.min(config.hostSteps, Math.round(300 / set.tensors.length)));
  const us = await hostUs(env.now, n, config.hostSamples, () => optimizer.applyGradients(grads), flush);
  optimizer.dispose();
  variables.forEach((v) => v.dispose());
  Object.values(grads).forEach((g) => g.dispose());
  return us;
}

/**
 * Runs both halves on `env.device` and returns the figures (`formatStepCost` prints them).
 *
 * @example
 * ```ts
 * console.log(formatStepCost(await runStepCost(env, STEP_COST_QUICK)));
 * ```
 */
export async function runStepCost(env: BenchEnvironment, config: StepCostConfig): Promise<StepCostReport> {
  const timer = new GpuTimer(env.device, env.device.features.has('timestamp-query'), env.now);
  try {
    const model = transformer(config.transformer);
    const tensors = (count: number): TensorSet => ({
      name: `${count} tensors of ${formatCount(config.hostSize)}`,
      tensors: Array.from({ length: count }, (_, i) => ({ name: `t${i}`, size: config.hostSize })),
    });
    env.log(`${env.name}: step cost, roofline on ${model.name} ...`);
    const r = await roofline(env, timer, config, model);
    env.log(`${env.name}: step cost, host time ...`);
    const host = await hostTimes(env, config, [tensors(model.tensors.length), tensors(config.manyTensors)]);
    return {
      environment: env.name,
      adapter: env.adapter,
      params: r.count,
      roofline: r.rows,
      plainOfSameBytes: r.plainOfSameBytes,
      centeredOfSameBytes: r.centeredOfSameBytes,
      clipOverPlain: r.clipOverPlain,
      host,
    };
  } finally {
    timer.destroy();
  }
}

/**
 * The report as text: the roofline table with the goals met or missed, then the host table.
 *
 * @example
 * ```ts
 * console.log(formatStepCost(report));
 * ```
 */
export function formatStepCost(r: StepCostReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  const lines = [
    `Step cost — ${r.environment}, adapter: ${r.adapter}; ` +
      `one ParamArena of ${formatCount(r.params)} elements (padding included)`,
    '',
    '| kernel | B/param | ms/step | GB/s |',
    '| --- | --- | --- | --- |',
    ...r.roofline.map((row) =>
      `| ${row.name} | ${row.bytesPerParam} | ${row.ms.toFixed(2)} | ${row.gbPerS.toFixed(2)} |`),
    '',
    `plain arena step: ${pct(r.plainOfSameBytes)} of the same-bytes kernel's speed ` +
      `(goal >= ${pct(GOALS.plainOfSameBytes)}: ${r.plainOfSameBytes >= GOALS.plainOfSameBytes ? 'met' : 'MISSED'}); ` +
      `centered + momentum: ${pct(r.centeredOfSameBytes)}`,
    `clipGradNorm + skipNonFinite: ${r.clipOverPlain.toFixed(2)}x the plain arena step ` +
      `(goal <= ${GOALS.clipOverPlain}x: ${r.clipOverPlain <= GOALS.clipOverPlain ? 'met' : 'MISSED'})`,
    '',
    '| tensor set | layout | options | dispatches | passes | step(encoder) µs | step() µs | ' +
      'TF.js applyGradients µs |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.host.map((h) =>
      `| ${h.set} | ${h.layout} | ${h.options} | ${h.dispatches} | ${h.passes} | ${h.recordUs.toFixed(1)} | ` +
      `${h.submitUs.toFixed(1)} | ${h.tfjsUs !== undefined ? h.tfjsUs.toFixed(0) : ''} |`),
  ];
  return lines.join('\n');
}
