/**
 * `npm run bench -- --tfjs`: a whole training step of a tfjs-layers model (`model.trainOnBatch`, which
 * reads the loss back, as `fit` does every batch) with `tf.train.rmsprop`, with this library's
 * `tfjsRMSProp`, and with an optimizer that does nothing (the floor: the same forward and backward
 * passes, no update), for an MLP, a 32-variable deep MLP and a small conv net, side by side on one
 * device, measured in turn round by round so that load from elsewhere falls on all three alike. Also:
 * each optimizer's own time (`applyGradients` of fixed gradients, to the queue's end) and the host
 * time spent inside `applyGradients` during the training steps. The same in Node and in the page.
 *
 * The goal (issue 12): this optimizer's cost above the floor at most 10% of tf.train.rmsprop's.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { tfjsRMSProp } from '../src/tfjs/index.js';
import { lossOf, makeData, makeModel, type ModelKind, type Tf, type Tfl } from '../test/tfjs/models.js';
import { median } from './timing.js';

/** The goal: (ours - floor) <= GOAL * (TF.js - floor), per model. */
export const TFJS_COST_GOAL = 0.1;

/** What runs the TF.js bench: TF.js on its WebGPU backend, on `device`. */
export interface TfjsBenchEnvironment {
  readonly name: string;
  readonly adapter: string;
  readonly device: GPUDevice;
  readonly tf: Tf;
  readonly tfl: Tfl;
  readonly now: () => number;
  /**
   * The process's CPU time in ms (Node: `process.cpuUsage()`), where the GPU's work is the process's
   * own (Dawn on SwiftShader or lavapipe runs it on the process's threads): a measure that the load
   * of other processes on the machine disturbs much less than the wall clock. Absent in the page.
   */
  readonly cpuNow?: () => number;
  readonly log: (line: string) => void;
}

export interface TfjsBenchConfig {
  readonly models: readonly ModelKind[];
  /** Timed rounds; each round times one batch of every optimizer. The median batch is reported. */
  readonly rounds: number;
  /** Training steps per timed batch. */
  readonly steps: number;
  /** Untimed steps first (TF.js compiles its kernels' pipelines, the optimizer builds). */
  readonly warmup: number;
  readonly batchSize: number;
}

export const TFJS_FULL_CONFIG: TfjsBenchConfig = {
  models: ['mlp', 'deep', 'conv'], rounds: 15, steps: 8, warmup: 3, batchSize: 32,
};
export const TFJS_QUICK_CONFIG: TfjsBenchConfig = { ...TFJS_FULL_CONFIG, rounds: 5, steps: 4 };
/** For the unit test of the code path: tiny. */
export const TFJS_TINY_CONFIG: TfjsBenchConfig = { models: ['mlp'], rounds: 1, steps: 2, warmup: 1, batchSize: 8 };

export type OptimizerName = 'tf.train.rmsprop' | 'tfjsRMSProp' | 'no-op';
export const OPTIMIZERS: readonly OptimizerName[] = ['tf.train.rmsprop', 'tfjsRMSProp', 'no-op'];

/** One optimizer on one model. */
export interface OptimizerFigures {
  /** Median ms per training step (trainOnBatch), and the spread over rounds. */
  readonly stepMs: number;
  /** With `cpuNow`: median CPU ms per training step, and the same above the floor. */
  readonly stepCpuMs?: number;
  readonly aboveFloorCpuMs?: number;
  readonly aboveFloorCpuErrorMs?: number;
  readonly minStepMs: number;
  readonly maxStepMs: number;
  /**
   * Median over rounds of (this step - the floor's step in the same round): the optimizer's cost in a
   * training step. Paired by round, so that load that shifts between rounds cancels.
   */
  readonly aboveFloorMs: number;
  /**
   * The uncertainty of `aboveFloorMs`: two standard errors of a median, 2 × 1.2533 × sigma / sqrt(rounds),
   * sigma estimated from the paired differences' interquartile range (/ 1.349, as for a normal spread).
   */
  readonly aboveFloorErrorMs: number;
  /** Median host ms inside applyGradients per training step. */
  readonly applyHostMs: number;
  /** The optimizer alone: ms per applyGradients of fixed gradients, to the end of its GPU work. */
  readonly optimizerMs: number;
  /** What one applyGradients asks of the GPU (counted, so the same on any machine): see {@link GpuWork}. */
  readonly work: GpuWork;
}

export interface TfjsModelResult {
  readonly model: ModelKind;
  readonly variables: number;
  readonly params: number;
  readonly figures: Readonly<Record<OptimizerName, OptimizerFigures>>;
  /** ours' aboveFloorMs / TF.js's: the goal is at most TFJS_COST_GOAL. */
  readonly costRatio: number;
  /**
   * 'met' when even ours' upper bound (aboveFloorMs + aboveFloorErrorMs) is within the goal of TF.js's
   * cost, 'missed' when even its lower bound is above it, 'unresolved' when the run's noise cannot tell
   * (also whenever TF.js's own cost above the floor is not resolved: its lower bound at or below 0).
   */
  readonly verdict: 'met' | 'missed' | 'unresolved';
  /** The same in CPU time, where measured, and its verdict. */
  readonly costRatioCpu?: number;
  readonly verdictCpu?: 'met' | 'missed' | 'unresolved';
  /** ours' optimizerMs / TF.js's. */
  readonly optimizerRatio: number;
}

export interface TfjsBenchReport {
  readonly environment: string;
  readonly adapter: string;
  readonly config: TfjsBenchConfig;
  readonly models: readonly TfjsModelResult[];
  readonly durationMs: number;
}

/** GPU calls per applyGradients: dispatches, compute passes, buffer copies, bind groups and buffers made, queue writes, submits. */
export interface GpuWork {
  readonly dispatches: number;
  readonly passes: number;
  readonly copies: number;
  readonly bindGroups: number;
  readonly buffers: number;
  readonly writes: number;
  readonly submits: number;
}

/**
 * Counts the GPU calls `work` makes on `device` (TF.js's included: its kernels, uniform buffers and
 * submits), by wrapping the device's and its encoders' methods for the duration.
 */
function countGpuWork(device: GPUDevice, work: () => void): GpuWork {
  const n = { dispatches: 0, passes: 0, copies: 0, bindGroups: 0, buffers: 0, writes: 0, submits: 0 };
  const saved = {
    createCommandEncoder: device.createCommandEncoder, createBindGroup: device.createBindGroup, createBuffer: device.createBuffer,
    writeBuffer: device.queue.writeBuffer, submit: device.queue.submit,
  };
  device.createCommandEncoder = function (d?: GPUCommandEncoderDescriptor) {
    const encoder = saved.createCommandEncoder.call(device, d);
    const begin = encoder.beginComputePass.bind(encoder), copy = encoder.copyBufferToBuffer.bind(encoder) as (...a: unknown[]) => void;
    encoder.beginComputePass = (pd?: GPUComputePassDescriptor) => {
      n.passes++;
      const pass = begin(pd);
      const dispatch = pass.dispatchWorkgroups.bind(pass);
      pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => { n.dispatches++; dispatch(x, y, z); };
      return pass;
    };
    (encoder as { copyBufferToBuffer: (...a: unknown[]) => void }).copyBufferToBuffer = (...a: unknown[]) => { n.copies++; copy(...a); };
    return encoder;
  };
  device.createBindGroup = (d: GPUBindGroupDescriptor) => { n.bindGroups++; return saved.createBindGroup.call(device, d); };
  device.createBuffer = (d: GPUBufferDescriptor) => { n.buffers++; return saved.createBuffer.call(device, d); };
  device.queue.writeBuffer = ((...a: Parameters<GPUQueue['writeBuffer']>) => {
    n.writes++;
    return saved.writeBuffer.apply(device.queue, a);
  }) as GPUQueue['writeBuffer'];
  device.queue.submit = (b: Iterable<GPUCommandBuffer>) => { n.submits++; return saved.submit.call(device.queue, b); };
  try {
    work();
  } finally {
    const { createCommandEncoder, createBindGroup, createBuffer } = saved;
    Object.assign(device, { createCommandEncoder, createBindGroup, createBuffer });
    Object.assign(device.queue, { writeBuffer: saved.writeBuffer, submit: saved.submit });
  }
  return n;
}

/** An optimizer that takes the gradients and does nothing with them: the floor of a training step. */
function noOpOptimizer(tf: Tf): TF.Optimizer {
  class NoOp extends tf.Optimizer {
    static get className(): string {
      return 'BenchNoOp';
    }

    override applyGradients(): void {
      this.incrementIterations();
    }

    override getConfig(): TF.serialization.ConfigDict {
      return {};
    }
  }
  return new NoOp();
}

function makeOptimizer(tf: Tf, name: OptimizerName): TF.Optimizer {
  const rule = { learningRate: 1e-3, decay: 0.9, momentum: 0.9, epsilon: 1e-7 };
  switch (name) {
    case 'tf.train.rmsprop': return tf.train.rmsprop(rule.learningRate, rule.decay, rule.momentum, rule.epsilon);
    case 'tfjsRMSProp': return tfjsRMSProp(tf, rule);
    case 'no-op': return noOpOptimizer(tf);
  }
}

/** Wraps `optimizer.applyGradients` to add up the host time spent in it. */
function timeApplyGradients(optimizer: TF.Optimizer, now: () => number): { total: () => number; reset: () => void } {
  const apply = optimizer.applyGradients.bind(optimizer);
  let total = 0;
  optimizer.applyGradients = (grads) => {
    const start = now();
    try {
      apply(grads);
    } finally {
      total += now() - start;
    }
  };
  return { total: () => total, reset: () => { total = 0; } };
}

/** Submits TF.js's queued commands (what its own reads do first), so that the queue's end is the work's end. */
function flushTfjs(tf: Tf): void {
  const b = tf.backend() as unknown as { commandEncoder?: unknown; endComputePassEncoder?: () => void; submitQueue?: () => void };
  if (b.commandEncoder) {
    b.endComputePassEncoder!();
    b.submitQueue!();
  }
}

/**
 * Runs the benchmark on `env` and returns its figures (`formatTfjsReport` prints them).
 *
 * @example
 * ```ts
 * const env = { name: 'Node (Dawn)', adapter, device, tf, tfl, now: () => performance.now(), log: console.log };
 * const report = await runTfjsBench(env, TFJS_QUICK_CONFIG);
 * console.log(formatTfjsReport(report));
 * ```
 */
export async function runTfjsBench(env: TfjsBenchEnvironment, config: TfjsBenchConfig): Promise<TfjsBenchReport> {
  const { tf, tfl, device, now } = env;
  const started = now();
  if (tf.getBackend() !== 'webgpu') throw new Error('The TF.js bench runs on TF.js\'s WebGPU backend.');
  const results: TfjsModelResult[] = [];
  for (const kind of config.models) {
    env.log(`${env.name}: tfjs ${kind} ...`);
    const data = makeData(tf, kind, config.batchSize, 3);
    const runners = OPTIMIZERS.map((name) => {
      const model = makeModel(tf, tfl, kind, 1);
      const optimizer = makeOptimizer(tf, name);
      model.compile({ optimizer, loss: lossOf(kind) });
      const applyTime = timeApplyGradients(optimizer, now);
      return { name, model, optimizer, applyTime, steps: [] as number[], cpus: [] as number[], hosts: [] as number[] };
    });
    device.pushErrorScope('validation');
    try {
      for (const r of runners) for (let s = 0; s < config.warmup; s++) await r.model.trainOnBatch(data.x, data.y);
      for (let round = 0; round < config.rounds; round++) {
        // A different order each round: whatever favours a position (a GC pause, a warm cache) falls on each alike.
        for (let k = 0; k < runners.length; k++) {
          const r = runners[(k + round) % runners.length]!;
          r.applyTime.reset();
          const start = now(), cpuStart = env.cpuNow?.() ?? 0;
          for (let s = 0; s < config.steps; s++) await r.model.trainOnBatch(data.x, data.y); // each reads its loss back
          flushTfjs(tf);
          await device.queue.onSubmittedWorkDone();
          r.steps.push((now() - start) / config.steps);
          if (env.cpuNow) r.cpus.push((env.cpuNow() - cpuStart) / config.steps);
          r.hosts.push(r.applyTime.total() / config.steps);
        }
      }
      // Each optimizer alone, on fixed gradients (their values do not change the work).
      const optimizerMs = new Map<OptimizerName, number>();
      const works = new Map<OptimizerName, GpuWork>();
      for (const r of runners) {
        const grads: TF.NamedTensorMap = {};
        // On the GPU, as a backward pass leaves them (a fill kernel's output plus values: TF.js keeps no CPU copy).
        for (const w of r.model.trainableWeights) {
          grads[(w.read() as TF.Variable).name] = tf.tidy(() => {
            const g = tf.randomNormal(w.shape as number[], 0, 1e-3, 'float32', 9);
            return tf.add(g, tf.zerosLike(g));
          });
        }
        const times: number[] = [];
        for (let round = 0; round < Math.max(3, config.rounds); round++) {
          const start = now();
          for (let s = 0; s < config.steps; s++) r.optimizer.applyGradients(grads);
          flushTfjs(tf);
          await device.queue.onSubmittedWorkDone();
          times.push((now() - start) / config.steps);
        }
        // Counted on a step whose kernels and buffers TF.js already has (pipelines cached, pools filled).
        works.set(r.name, countGpuWork(device, () => { r.optimizer.applyGradients(grads); flushTfjs(tf); }));
        await device.queue.onSubmittedWorkDone();
        tf.dispose(Object.values(grads));
        optimizerMs.set(r.name, median(times));
      }
      const floor = runners.find((r) => r.name === 'no-op')!;
      const figures = Object.fromEntries(runners.map((r) => [r.name, {
        stepMs: median(r.steps),
        aboveFloorMs: median(r.steps.map((x, round) => x - floor.steps[round]!)),
        aboveFloorErrorMs: medianError(r.steps.map((x, round) => x - floor.steps[round]!)),
        ...(env.cpuNow ? {
          stepCpuMs: median(r.cpus),
          aboveFloorCpuMs: median(r.cpus.map((x, round) => x - floor.cpus[round]!)),
          aboveFloorCpuErrorMs: medianError(r.cpus.map((x, round) => x - floor.cpus[round]!)),
        } : {}),
        minStepMs: Math.min(...r.steps),
        maxStepMs: Math.max(...r.steps),
        applyHostMs: median(r.hosts),
        optimizerMs: optimizerMs.get(r.name)!,
        work: works.get(r.name)!,
      }])) as Record<OptimizerName, OptimizerFigures>;
      const model = runners[0]!.model;
      const ours = figures.tfjsRMSProp, theirs = figures['tf.train.rmsprop'];
      // A budget is only a budget where TF.js's own cost above the floor is resolved (its lower bound above 0):
      // a negative one, from noise, made 'met' of a point estimate below it and a ratio of two negatives.
      const verdict = (x: number, error: number, budget: number, theirsLow: number) =>
        (theirsLow <= 0 ? 'unresolved' : x + error <= budget ? 'met' : x - error > budget ? 'missed' : 'unresolved');
      results.push({
        model: kind,
        variables: model.trainableWeights.length,
        params: model.countParams(),
        figures,
        costRatio: ours.aboveFloorMs / theirs.aboveFloorMs,
        verdict: verdict(ours.aboveFloorMs, ours.aboveFloorErrorMs, TFJS_COST_GOAL * theirs.aboveFloorMs,
          theirs.aboveFloorMs - theirs.aboveFloorErrorMs),
        ...(env.cpuNow ? {
          costRatioCpu: ours.aboveFloorCpuMs! / theirs.aboveFloorCpuMs!,
          verdictCpu: verdict(ours.aboveFloorCpuMs!, ours.aboveFloorCpuErrorMs!, TFJS_COST_GOAL * theirs.aboveFloorCpuMs!,
            theirs.aboveFloorCpuMs! - theirs.aboveFloorCpuErrorMs!),
        } : {}),
        optimizerRatio: figures.tfjsRMSProp.optimizerMs / figures['tf.train.rmsprop'].optimizerMs,
      });
    } finally {
      const error = await device.popErrorScope();
      for (const r of runners) {
        r.model.dispose();
        r.optimizer.dispose();
      }
      tf.dispose([data.x, data.y]);
      if (error) throw new Error(`WebGPU validation error in the TF.js bench: ${error.message}`);
    }
  }
  return { environment: env.name, adapter: env.adapter, config, models: results, durationMs: now() - started };
}

function workTable(report: TfjsBenchReport): string[] {
  const header = ['model', 'optimizer', 'dispatches', 'passes', 'copies', 'bind groups', 'buffers made', 'queue writes', 'submits'];
  const body = report.models.flatMap((m) => OPTIMIZERS.filter((o) => o !== 'no-op').map((name) => {
    const w = m.figures[name].work;
    return [m.model, name, ...[w.dispatches, w.passes, w.copies, w.bindGroups, w.buffers, w.writes, w.submits].map(String)];
  }));
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((r) => r[c]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
}

const VERDICTS = { met: 'met', missed: 'MISSED', unresolved: 'not resolved at this run\'s noise (see ±)' } as const;

/** Two standard errors of the median of `xs` (see OptimizerFigures.aboveFloorErrorMs). */
function medianError(xs: readonly number[]): number {
  if (xs.length < 2) return Infinity;
  const sorted = [...xs].sort((a, b) => a - b);
  const q = (p: number) => {
    const at = p * (sorted.length - 1), lo = Math.floor(at), hi = Math.ceil(at);
    return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
  };
  return (2 * 1.2533 * ((q(0.75) - q(0.25)) / 1.349)) / Math.sqrt(xs.length);
}

const fixed = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const ms = (x: number) => (x >= 100 ? fixed(x, 0) : x >= 10 ? fixed(x, 1) : x >= 1 ? fixed(x, 2) : fixed(x, 3));

/**
 * The report as text: per model, each optimizer's training step, its cost above the floor, its own
 * time and its host time in applyGradients; then the goal's verdict per model.
 *
 * @example
 * ```ts
 * console.log(formatTfjsReport(await runTfjsBench(env, TFJS_FULL_CONFIG)));
 * ```
 */
export function formatTfjsReport(report: TfjsBenchReport): string {
  const cpu = report.models.some((m) => m.costRatioCpu !== undefined);
  const header = ['model', 'vars', 'params', 'optimizer', 'step ms', '(min-max)', 'above floor',
    ...(cpu ? ['CPU ms', 'CPU above floor'] : []),
    'optimizer ms', 'applyGradients host ms'];
  const body = report.models.flatMap((m) => OPTIMIZERS.map((name) => {
    const f = m.figures[name];
    return [m.model, String(m.variables), String(m.params), name, ms(f.stepMs), `${ms(f.minStepMs)}-${ms(f.maxStepMs)}`,
      name === 'no-op' ? '(floor)' : `${ms(f.aboveFloorMs)} ±${ms(f.aboveFloorErrorMs)}`,
      ...(cpu ? [ms(f.stepCpuMs!), name === 'no-op' ? '(floor)' : `${ms(f.aboveFloorCpuMs!)} ±${ms(f.aboveFloorCpuErrorMs!)}`] : []),
      ms(f.optimizerMs), ms(f.applyHostMs)];
  }));
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((r) => r[c]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, c) => (c === 0 || c === 3 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const out = [
    `== ${report.environment} | TF.js training step | adapter: ${report.adapter}`,
    `   model.trainOnBatch (batch ${report.config.batchSize}, loss read back each step), wall clock; median of ` +
      `${report.config.rounds} rounds of ${report.config.steps} steps, the three optimizers in turn each round ` +
      "(rotating the order). 'above floor': median over rounds " +
      'of (step - no-op step) in the same round. rule: lr 1e-3, decay 0.9, momentum 0.9, epsilon 1e-7.',
    '',
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...body.map(line),
    '',
    'GPU calls of one applyGradients (TF.js\'s own included), counted:',
    ...workTable(report),
    '',
    `Goal: tfjsRMSProp's cost above the floor <= ${TFJS_COST_GOAL * 100}% of tf.train.rmsprop's:`,
    ...report.models.map((m) => `  ${m.model}: wall ${fixed(100 * m.costRatio, 1)}% -> ${VERDICTS[m.verdict]}` +
      (m.costRatioCpu !== undefined ? `; CPU time ${fixed(100 * m.costRatioCpu, 1)}% -> ${VERDICTS[m.verdictCpu!]}` : '') +
      ` (the optimizer alone: ${fixed(100 * m.optimizerRatio, 1)}% of tf.train.rmsprop's time)`),
    `(${report.environment} took ${fixed(report.durationMs / 1000, 1)} s)`,
  ];
  return out.join('\n');
}
