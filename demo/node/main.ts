/**
 * `npm start`: trains the demo's two problems headless on the best WebGPU adapter Dawn finds
 * (SwiftShader where there is no GPU), or on the CPU reference where there is no adapter at all:
 *
 * - linear regression with RMSProp, compared with the closed-form least-squares optimum;
 * - the two-spirals MLP (2 → 32 → 32 → 1, all WGSL, parameters in one ParamArena), RMSProp beside
 *   plain SGD from the same start, with both losses every `--every` steps and the final accuracy.
 *
 *   npm start -- [--problem linreg|spirals|all] [--steps N] [--lr X] [--sgd-lr X] [--schedule cosine|constant]
 *                [--every N] [--max-gap X] [--min-accuracy X] [--cpu]
 *
 * A flag given applies to every problem run; each problem has its own defaults (flags.ts).
 * Exits with 1 if training diverged (a non-finite loss), if the linear regression's final loss is
 * not within `--max-gap` (relative) of the optimum, if RMSProp's spirals accuracy is below
 * `--min-accuracy`, or on a WebGPU validation error.
 */
import { DEFAULT_OPTIONS, ReferenceRMSProp, RMSProp, type RMSPropOptions } from '../../src/index.js';
import {
  CpuLinearRegression,
  GpuLinearRegression,
  lossAndGradient,
  makeRegressionData,
  solveLeastSquares,
  type LeastSquares,
} from '../problems/linear-regression.js';
import { CpuSgd, GpuSgd } from '../problems/sgd.js';
import { CpuSpirals, GpuSpirals, HIDDEN, SPIRAL_PARAMETERS, initialSpiralParams, makeSpiralData, type SpiralMetrics } from '../problems/spirals.js';
import { adapterLine, describeLimits, requestNodeAdapter, type NodeGpu } from './dawn.js';
import { USAGE, lrAt, parseFlags, type Flags } from './flags.js';

/** Steps between learning-rate updates of the schedule (each update ends a submission). */
const LR_EVERY = 10;

/** What the training loop needs of either twin. */
interface Trainer {
  /** Trains `steps` steps at learning rate `lr`; with `read`, resolves to the loss after them. */
  train(steps: number, lr: number, read: boolean): Promise<number | undefined>;
  /** w and b as trained so far. */
  params(): Promise<{ w: Float32Array; b: number }>;
}

async function runLinreg(flags: Flags, found: NodeGpu | null): Promise<number> {
  const run = flags.linreg;
  const data = makeRegressionData({ samples: 4096, features: 16, seed: 1, noise: 0.5 });
  const best = solveLeastSquares(data);
  // PyTorch's defaults, with a learning rate of 0.02 instead of 0.01, decayed to 0 on a cosine.
  // RMSProp moves every parameter by about lr per step at first, whatever its gradient's scale, and
  // the weights here are O(1): 0.02 reaches them in a couple of hundred steps. At a constant lr it
  // then hovers around the optimum (--schedule constant: about 9% above it), because the mean
  // square shrinks with the gradient and the steps stay near lr in size; the decay lets it settle.
  const options: Partial<RMSPropOptions> = { ...DEFAULT_OPTIONS, lr: run.lr };

  const scales = `${data.scales[0]!.toPrecision(2)} … ${data.scales[data.features - 1]!.toPrecision(2)}`;
  console.log(`Linear regression: ${data.samples} samples × ${data.features} features (feature scales ${scales}), label noise σ 0.5, seed 1`);
  console.log(`RMSProp: lr ${options.lr} (PyTorch's default 0.01)${run.schedule === 'cosine' ? ' on a cosine decay to 0' : ', constant'}, alpha ${options.alpha}, eps ${options.eps} (${options.epsMode} the root), no momentum; w, b start at 0`);
  console.log(`Closed-form least squares (normal equations, float64): loss ${best.loss.toPrecision(7)}`);

  let trainer: Trainer, cleanup = async (): Promise<string | null> => null;
  if (found) {
    const { device, lost } = await deviceOf(found);
    device.pushErrorScope('validation');
    const problem = new GpuLinearRegression(device, data);
    const optimizer = new RMSProp(device, problem.params, options);
    trainer = {
      train: async (steps, lr, read) => {
        optimizer.lr = lr; // written to the GPU before the next submission; no pipeline is rebuilt
        if (read) return problem.train(optimizer, steps);
        problem.submitSteps(optimizer, steps);
        return undefined;
      },
      params: () => problem.read(),
    };
    cleanup = async () => {
      const error = await device.popErrorScope();
      optimizer.destroy();
      problem.destroy();
      return error ? `WebGPU validation error: ${error.message}` : lost() ? `device lost: ${lost()}` : null;
    };
  } else {
    const problem = new CpuLinearRegression(data);
    const optimizer = new ReferenceRMSProp(problem.params, options);
    trainer = {
      train: async (steps, lr) => {
        optimizer.lr = lr;
        return problem.train(optimizer, steps);
      },
      params: async () => ({ w: problem.w.slice(), b: problem.b[0]! }),
    };
  }

  console.log(`\n${'step'.padStart(6)}  ${'lr'.padStart(9)}  ${'loss'.padStart(12)}  ${'loss - best'.padStart(12)}  ${'relative gap'.padStart(12)}`);
  const line = (step: number, loss: number, lr = run.lr) => {
    const gap = loss - best.loss;
    console.log(`${String(step).padStart(6)}  ${lr.toExponential(2).padStart(9)}  ${loss.toPrecision(7).padStart(12)}  ${gap.toExponential(3).padStart(12)}  ${(gap / best.loss).toExponential(3).padStart(12)}`);
  };
  line(0, (await trainer.train(0, run.lr, true))!);
  const start = performance.now();
  let loss = NaN, step = 0;
  while (step < run.steps) {
    const report = Math.min(run.steps, (Math.floor(step / run.every) + 1) * run.every);
    const n = Math.min(LR_EVERY, report - step);
    const read = step + n === report;
    // The middle of the chunk, so that the piecewise-constant lr follows the cosine without lag.
    const result = await trainer.train(n, lrAt(run, run.lr, step + n / 2), read);
    step += n;
    if (read) {
      loss = result!;
      line(step, loss, lrAt(run, run.lr, step));
      if (!Number.isFinite(loss)) break;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  const { w, b } = await trainer.params();
  const failure = await cleanup();
  // The loss of the trained w, b again, in float64: the GPU's is f32, so within rounding (about
  // 1e-7 relative) of the optimum it can even read below it.
  const exact = lossAndGradient(data, w, b).loss;
  return summary({ loss, exact, step, seconds, w, b, best, flags, failure });
}

function summary(r: { loss: number; exact: number; step: number; seconds: number; w: Float32Array; b: number; best: LeastSquares; flags: Flags; failure: string | null }): number {
  const { loss, exact, best } = r;
  const gap = (exact - best.loss) / best.loss;
  let dw = 0, nw = 0;
  r.w.forEach((wj, j) => { dw += (wj - best.w[j]!) ** 2; nw += best.w[j]! ** 2; });
  console.log(`\nFinal loss ${exact.toPrecision(7)} (float64, from the trained w, b; the training loop read ${loss.toPrecision(7)})`);
  console.log(`Closed-form loss ${best.loss.toPrecision(7)}: relative gap ${gap.toExponential(2)} (limit ${r.flags.maxGap})`);
  console.log(`‖w − w_ls‖ ${Math.sqrt(dw).toExponential(2)} (‖w_ls‖ ${Math.sqrt(nw).toPrecision(4)}), |b − b_ls| ${Math.abs(r.b - best.b).toExponential(2)}`);
  console.log(`${r.step} steps in ${r.seconds.toFixed(2)} s: ${(r.step / r.seconds).toFixed(0)} steps/s`);
  if (r.failure) {
    console.error(`FAILED: ${r.failure}`);
    return 1;
  }
  if (!Number.isFinite(loss) || !Number.isFinite(exact)) {
    console.error(`FAILED: training diverged (loss ${loss}); try a smaller --lr.`);
    return 1;
  }
  if (!(gap <= r.flags.maxGap)) {
    console.error(`FAILED: the final loss is ${gap.toExponential(2)} above the optimum (relative), more than --max-gap ${r.flags.maxGap}; train longer (--steps) or change --lr.`);
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Two spirals: RMSProp beside SGD

/** What the spirals loop needs of either twin: both models trained the same number of steps. */
interface PairTrainer {
  /** Trains both `steps` steps; with `read`, resolves to their metrics after them. */
  train(steps: number, lr: number, sgdLr: number, read: boolean): Promise<{ rmsprop: SpiralMetrics; sgd: SpiralMetrics } | undefined>;
  /** Frees what it made; says what went wrong on the GPU, if anything. */
  cleanup(): Promise<string | null>;
}

async function runSpirals(flags: Flags, found: NodeGpu | null): Promise<number> {
  const run = flags.spirals;
  const data = makeSpiralData();
  const init = initialSpiralParams(1);
  const options: Partial<RMSPropOptions> = { ...DEFAULT_OPTIONS, lr: run.lr };
  const cosine = run.schedule === 'cosine';
  console.log(`Two spirals: ${data.samples} points, 1.75 turns, seed 1; MLP 2→${HIDDEN}→${HIDDEN}→1 (${SPIRAL_PARAMETERS} parameters in one ParamArena), tanh, logistic loss`);
  console.log(`RMSProp: lr ${run.lr}${cosine ? ' on a cosine decay to 0' : ', constant'}, alpha ${options.alpha}, eps ${options.eps}; SGD (p -= lr·g): lr ${run.sgdLr}${cosine ? ' on the same cosine' : ''}; both from the same initial weights`);

  let trainer: PairTrainer;
  if (found) {
    const { device, lost } = await deviceOf(found);
    device.pushErrorScope('validation');
    const a = new GpuSpirals(device, data, init, { label: 'start.rmsprop' });
    const b = new GpuSpirals(device, data, init, { label: 'start.sgd' });
    const rmsprop = new RMSProp(device, a.params, options); // one dispatch per step for the arena's six tensors
    const sgd = new GpuSgd(device, [{ param: b.arena.params, grad: b.arena.grads }], run.sgdLr);
    trainer = {
      async train(steps, lr, sgdLr, read) {
        rmsprop.lr = lr;
        sgd.lr = sgdLr;
        if (!read) {
          a.submitSteps(rmsprop, steps);
          b.submitSteps(sgd, steps);
          return undefined;
        }
        const [r, s] = await Promise.all([a.train(rmsprop, steps), b.train(sgd, steps)]);
        return { rmsprop: r, sgd: s };
      },
      async cleanup() {
        const error = await device.popErrorScope();
        rmsprop.destroy();
        sgd.destroy();
        a.destroy();
        b.destroy();
        return error ? `WebGPU validation error: ${error.message}` : lost() ? `device lost: ${lost()}` : null;
      },
    };
  } else {
    const a = new CpuSpirals(data, init), b = new CpuSpirals(data, init);
    const rmsprop = new ReferenceRMSProp(a.params, options);
    const sgd = new CpuSgd(b.params, run.sgdLr);
    trainer = {
      async train(steps, lr, sgdLr) {
        rmsprop.lr = lr;
        sgd.lr = sgdLr;
        return { rmsprop: a.train(rmsprop, steps), sgd: b.train(sgd, steps) };
      },
      cleanup: async () => null,
    };
  }

  console.log(`\n${'step'.padStart(6)}  ${'RMSProp loss'.padStart(12)}  ${'accuracy'.padStart(8)}  ${'SGD loss'.padStart(12)}  ${'accuracy'.padStart(8)}`);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const line = (step: number, m: { rmsprop: SpiralMetrics; sgd: SpiralMetrics }) => {
    console.log(`${String(step).padStart(6)}  ${m.rmsprop.loss.toPrecision(5).padStart(12)}  ${pct(m.rmsprop.accuracy).padStart(8)}  ${m.sgd.loss.toPrecision(5).padStart(12)}  ${pct(m.sgd.accuracy).padStart(8)}`);
  };
  let metrics = (await trainer.train(0, run.lr, run.sgdLr, true))!;
  line(0, metrics);
  const start = performance.now();
  let step = 0;
  while (step < run.steps) {
    const report = Math.min(run.steps, (Math.floor(step / run.every) + 1) * run.every);
    const n = Math.min(LR_EVERY, report - step);
    const read = step + n === report;
    const middle = step + n / 2; // as linear regression's loop: the lr of the chunk's middle
    const result = await trainer.train(n, lrAt(run, run.lr, middle), lrAt(run, run.sgdLr, middle), read);
    step += n;
    if (read) {
      metrics = result!;
      line(step, metrics);
      if (!Number.isFinite(metrics.rmsprop.loss)) break;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  const failure = await trainer.cleanup();
  const { rmsprop, sgd } = metrics;
  console.log(`\nFinal: RMSProp loss ${rmsprop.loss.toPrecision(4)}, accuracy ${pct(rmsprop.accuracy)}; SGD loss ${sgd.loss.toPrecision(4)}, accuracy ${pct(sgd.accuracy)}`);
  console.log(`${step} steps of each in ${seconds.toFixed(2)} s: ${((2 * step) / seconds).toFixed(0)} model steps/s`);
  if (failure) {
    console.error(`FAILED: ${failure}`);
    return 1;
  }
  if (!Number.isFinite(rmsprop.loss)) {
    console.error(`FAILED: RMSProp diverged on the spirals (loss ${rmsprop.loss}); try a smaller --lr.`);
    return 1;
  }
  if (!(rmsprop.accuracy >= flags.minAccuracy)) {
    console.error(`FAILED: RMSProp classifies ${pct(rmsprop.accuracy)} of the spiral points right, below --min-accuracy ${flags.minAccuracy}; train longer (--steps) or change --lr.`);
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

/** One device per adapter for the whole run, and whether it was lost. */
const devices = new WeakMap<NodeGpu, { device: GPUDevice; lost: () => string | undefined }>();

async function deviceOf(found: NodeGpu): Promise<{ device: GPUDevice; lost: () => string | undefined }> {
  let entry = devices.get(found);
  if (!entry) {
    // The adapter's own buffer limits, so that a large tensor stays one binding where it can.
    const { maxStorageBufferBindingSize, maxBufferSize } = found.adapter.limits;
    const device = await found.adapter.requestDevice({ label: 'npm start', requiredLimits: { maxStorageBufferBindingSize, maxBufferSize } });
    console.log(`${describeLimits(device, found.adapter)}\n`);
    let lost: string | undefined;
    device.lost.then((info) => { if (info.reason !== 'destroyed') lost = `${info.reason}: ${info.message}`; }, () => {});
    entry = { device, lost: () => lost };
    devices.set(found, entry);
  }
  return entry;
}

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.help) {
    console.log(`${USAGE}\nWEBGPU_ADAPTER=auto|swiftshader|lavapipe|hardware picks the adapter (auto: a GPU, else lavapipe, else SwiftShader).`);
    return 0;
  }
  const found = flags.cpu ? null : await requestNodeAdapter();
  if (found) console.log(`WebGPU ${adapterLine(found)}\n`);
  else console.log(`${flags.cpu ? 'Training on the CPU reference (--cpu)' : 'no WebGPU adapter: training on the CPU reference'}\n`);
  const runs = flags.problem === 'all' ? [runLinreg, runSpirals] : flags.problem === 'linreg' ? [runLinreg] : [runSpirals];
  let code = 0;
  try {
    for (const [i, runOne] of runs.entries()) {
      if (i > 0) console.log(`\n${'─'.repeat(72)}\n`);
      code = Math.max(code, await runOne(flags, found));
    }
  } finally {
    if (found) devices.get(found)?.device.destroy();
  }
  return code;
}

main().then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
