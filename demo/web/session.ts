/**
 * A training run of the demo: one problem, two copies of its model from the same start, one trained
 * by the library's RMSProp and one by plain SGD, step for step. On WebGPU every step of both is
 * WGSL (forward, loss, backward, optimizer); without WebGPU the CPU twins run the same problem with
 * `ReferenceRMSProp` and `CpuSgd`.
 */
import { ReferenceRMSProp, RMSProp, type RMSPropOptions } from '../../src/index';
import {
  CpuLinearRegression,
  GpuLinearRegression,
  makeRegressionData,
  solveLeastSquares,
  type LeastSquares,
  type RegressionData,
} from '../problems/linear-regression';
import { CpuSgd, GpuSgd } from '../problems/sgd';
import { CpuSpirals, GpuSpirals, initialSpiralParams, makeSpiralData, type SpiralData } from '../problems/spirals';
import type { Hyper } from './controls';

export type ProblemName = 'spirals' | 'linreg';
export type Backend = 'webgpu' | 'cpu';

/** One optimizer's numbers after a chunk of steps. */
export interface Metrics {
  loss: number;
  /** Fraction classified right (spirals only). */
  accuracy?: number;
}

/** What the right-hand panel draws. */
export type Picture =
  | { kind: 'field'; grid: number; rmsprop: Float32Array; sgd: Float32Array; data: SpiralData }
  | { kind: 'weights'; rmsprop: Float32Array; sgd: Float32Array; best: LeastSquares; data: RegressionData };

export interface Session {
  readonly problem: ProblemName;
  readonly backend: Backend;
  /** The least loss there is (linear regression's closed form), to draw on the chart. */
  readonly floor?: number;
  /** Trains `steps` more steps of both models; resolves to their metrics after them. */
  train(steps: number): Promise<{ rmsprop: Metrics; sgd: Metrics }>;
  /** Sets both learning rates, effective from the next `train` (the values are valid: controls.ts checked them). */
  setLr(lr: number, sgdLr: number): void;
  /** The models as they stand, for drawing. */
  picture(): Promise<Picture>;
  destroy(): void;
}

const GRID = 64;

// The data sets are made once per page: they are the same for every run.
let spiralData: SpiralData | undefined;
let regression: { data: RegressionData; best: LeastSquares } | undefined;
const spirals = () => (spiralData ??= makeSpiralData());
function linreg() {
  if (!regression) {
    const data = makeRegressionData({ samples: 4096, features: 16, seed: 1, noise: 0.5 });
    regression = { data, best: solveLeastSquares(data) };
  }
  return regression;
}

function rmspropOptions(h: Hyper): Partial<RMSPropOptions> {
  return { lr: h.lr, alpha: h.alpha, momentum: h.momentum, centered: h.centered };
}

/**
 * Starts a run of `problem` with hyperparameters `h` on `device`, or on the CPU when `device` is null.
 *
 * @example
 * ```ts
 * const session = await createSession('spirals', device, DEFAULTS.spirals);
 * const { rmsprop, sgd } = await session.train(10);
 * ```
 */
export async function createSession(problem: ProblemName, device: GPUDevice | null, h: Hyper): Promise<Session> {
  if (problem === 'spirals') return device ? gpuSpirals(device, h) : cpuSpirals(h);
  return device ? gpuLinreg(device, h) : cpuLinreg(h);
}

async function gpuSpirals(device: GPUDevice, h: Hyper): Promise<Session> {
  const data = spirals(), init = initialSpiralParams(1);
  const a = new GpuSpirals(device, data, init, { grid: GRID, label: 'demo.rmsprop' });
  const b = new GpuSpirals(device, data, init, { grid: GRID, label: 'demo.sgd' });
  // The whole model is one ParamArena: one dispatch per step for RMSProp, and for SGD. Its pipelines
  // compile off the page's thread (RMSProp.create), so a Reset never stalls the page.
  const rmsprop = await RMSProp.create(device, a.params, rmspropOptions(h));
  const sgd = new GpuSgd(device, [{ param: b.arena.params, grad: b.arena.grads }], h.sgdLr);
  return {
    problem: 'spirals',
    backend: 'webgpu',
    async train(steps) {
      const [r, s] = await Promise.all([a.train(rmsprop, steps), b.train(sgd, steps)]);
      return { rmsprop: r, sgd: s };
    },
    setLr(lr, sgdLr) {
      rmsprop.lr = lr;
      sgd.lr = sgdLr;
    },
    async picture() {
      const [r, s] = await Promise.all([a.evaluateGrid(), b.evaluateGrid()]);
      return { kind: 'field', grid: GRID, rmsprop: r, sgd: s, data };
    },
    destroy() {
      rmsprop.destroy();
      sgd.destroy();
      a.destroy();
      b.destroy();
    },
  };
}

function cpuSpirals(h: Hyper): Session {
  const data = spirals(), init = initialSpiralParams(1);
  const a = new CpuSpirals(data, init), b = new CpuSpirals(data, init);
  const rmsprop = new ReferenceRMSProp(a.params, rmspropOptions(h));
  const sgd = new CpuSgd(b.params, h.sgdLr);
  return {
    problem: 'spirals',
    backend: 'cpu',
    async train(steps) {
      return { rmsprop: a.train(rmsprop, steps), sgd: b.train(sgd, steps) };
    },
    setLr(lr, sgdLr) {
      rmsprop.lr = lr;
      sgd.lr = sgdLr;
    },
    async picture() {
      return { kind: 'field', grid: GRID, rmsprop: a.evaluateGrid(GRID), sgd: b.evaluateGrid(GRID), data };
    },
    destroy() {},
  };
}

async function gpuLinreg(device: GPUDevice, h: Hyper): Promise<Session> {
  const { data, best } = linreg();
  const a = new GpuLinearRegression(device, data), b = new GpuLinearRegression(device, data);
  const rmsprop = await RMSProp.create(device, a.params, rmspropOptions(h));
  const sgd = new GpuSgd(device, b.params, h.sgdLr);
  return {
    problem: 'linreg',
    backend: 'webgpu',
    floor: best.loss,
    async train(steps) {
      const [r, s] = await Promise.all([a.train(rmsprop, steps), b.train(sgd, steps)]);
      return { rmsprop: { loss: r }, sgd: { loss: s } };
    },
    setLr(lr, sgdLr) {
      rmsprop.lr = lr;
      sgd.lr = sgdLr;
    },
    async picture() {
      const [r, s] = await Promise.all([a.read(), b.read()]);
      return { kind: 'weights', rmsprop: r.w, sgd: s.w, best, data };
    },
    destroy() {
      rmsprop.destroy();
      sgd.destroy();
      a.destroy();
      b.destroy();
    },
  };
}

function cpuLinreg(h: Hyper): Session {
  const { data, best } = linreg();
  const a = new CpuLinearRegression(data), b = new CpuLinearRegression(data);
  const rmsprop = new ReferenceRMSProp(a.params, rmspropOptions(h));
  const sgd = new CpuSgd(b.params, h.sgdLr);
  return {
    problem: 'linreg',
    backend: 'cpu',
    floor: best.loss,
    async train(steps) {
      return { rmsprop: { loss: a.train(rmsprop, steps) }, sgd: { loss: b.train(sgd, steps) } };
    },
    setLr(lr, sgdLr) {
      rmsprop.lr = lr;
      sgd.lr = sgdLr;
    },
    async picture() {
      return { kind: 'weights', rmsprop: a.w.slice(), sgd: b.w.slice(), best, data };
    },
    destroy() {},
  };
}
