/**
 * The RMSProp text's linear-regression example, done the right way: a synthetic regression
 * y = X·w* + b* + noise whose features have very different scales (so a single learning rate fits
 * none of them, and RMSProp's per-parameter scaling is what makes it train), its least-squares
 * optimum solved in float64, and two twins of the training problem:
 *
 * - `GpuLinearRegression`: forward, loss and backward in WGSL (demo/shaders/linear-regression.wgsl),
 *   recorded into the same command encoder as the library's `RMSProp.step(encoder)`;
 * - `CpuLinearRegression`: the same data, loss and gradient on the CPU in float64, for
 *   `ReferenceRMSProp` when there is no WebGPU adapter.
 *
 * Nothing here depends on Node or the browser: the GPU twin takes a `GPUDevice` from either.
 */
import type { ParamSpec, ReferenceParamSpec, ReferenceRMSProp, RMSProp } from '../../src/index.js';
import shaderSource from '../shaders/linear-regression.wgsl?raw';
import { mulberry32 } from './random.js';

// ---------------------------------------------------------------------------------------------
// Data and the closed-form optimum

/** A regression data set. `x` and `y` are f32: exactly what the GPU sees, and what the CPU twin and the solver read. */
export interface RegressionData {
  readonly samples: number;
  readonly features: number;
  /** samples × features, row-major. */
  readonly x: Float32Array;
  readonly y: Float32Array;
  /** The weights, bias and per-feature scales the data was drawn with. */
  readonly wTrue: Float64Array;
  readonly bTrue: number;
  readonly scales: Float64Array;
}

export interface RegressionDataOptions {
  /** Number of samples (default 4096). */
  samples?: number;
  /** Number of features (default 16). */
  features?: number;
  /** Seed of the generator (default 1): the same seed gives the same data everywhere. */
  seed?: number;
  /** Standard deviation of the label noise (default 0.5). */
  noise?: number;
  /** Feature j is scaled by `10 ** (-spread + 2 * spread * j / (features - 1))` (default 1: from 0.1 to 10). */
  spread?: number;
}

/**
 * Draws y = X·w* + b* + noise with a seeded generator. Features are standard normal times a scale
 * that grows geometrically from `10^-spread` to `10^spread`, and w* is standard normal, so the
 * gradients of the weights differ by up to `10^(2 spread)` in size.
 *
 * @example
 * ```ts
 * const data = makeRegressionData({ samples: 4096, features: 16, seed: 1 });
 * ```
 */
export function makeRegressionData(options: RegressionDataOptions = {}): RegressionData {
  const { samples = 4096, features = 16, seed = 1, noise = 0.5, spread = 1 } = options;
  if (!Number.isSafeInteger(samples) || samples < 1) throw new RangeError(`samples must be a positive integer, got ${samples}.`);
  if (!Number.isSafeInteger(features) || features < 1) throw new RangeError(`features must be a positive integer, got ${features}.`);
  const normal = gaussian(mulberry32(seed));
  const scales = Float64Array.from({ length: features }, (_, j) => 10 ** (features === 1 ? 0 : -spread + (2 * spread * j) / (features - 1)));
  const wTrue = Float64Array.from({ length: features }, () => normal());
  const bTrue = 2;
  const x = new Float32Array(samples * features), y = new Float32Array(samples);
  for (let i = 0; i < samples; i++) {
    let target = bTrue + noise * normal();
    for (let j = 0; j < features; j++) {
      const v = Math.fround(scales[j]! * normal());
      x[i * features + j] = v;
      target += v * wTrue[j]!;
    }
    y[i] = target;
  }
  return { samples, features, x, y, wTrue, bTrue, scales };
}

/** The least-squares solution: the weights and bias of the lowest mean squared error, and that error. */
export interface LeastSquares {
  readonly w: Float64Array;
  readonly b: number;
  readonly loss: number;
}

/**
 * Solves the normal equations (AᵀA) θ = Aᵀy in float64, with A = [X, 1] (the bias as a last
 * column), by Cholesky: the best loss any optimizer can reach on `data`.
 *
 * @example
 * ```ts
 * const best = solveLeastSquares(data); // best.loss is the floor to train against
 * ```
 */
export function solveLeastSquares(data: RegressionData): LeastSquares {
  const { samples: n, features: d, x, y } = data;
  const k = d + 1;
  const ata = new Float64Array(k * k), aty = new Float64Array(k);
  const row = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = x[i * d + j]!;
    row[d] = 1;
    const yi = y[i]!;
    for (let r = 0; r < k; r++) {
      aty[r]! += row[r]! * yi;
      for (let c = 0; c <= r; c++) ata[r * k + c]! += row[r]! * row[c]!;
    }
  }
  // Cholesky, in place in the lower triangle: AᵀA = L Lᵀ.
  for (let c = 0; c < k; c++) {
    let diag = ata[c * k + c]!;
    for (let m = 0; m < c; m++) diag -= ata[c * k + m]! ** 2;
    if (!(diag > 0)) throw new RangeError('solveLeastSquares: XᵀX is singular (a constant or repeated feature?).');
    const l = Math.sqrt(diag);
    ata[c * k + c] = l;
    for (let r = c + 1; r < k; r++) {
      let s = ata[r * k + c]!;
      for (let m = 0; m < c; m++) s -= ata[r * k + m]! * ata[c * k + m]!;
      ata[r * k + c] = s / l;
    }
  }
  // L z = Aᵀy, then Lᵀ θ = z.
  const theta = new Float64Array(k);
  for (let r = 0; r < k; r++) {
    let s = aty[r]!;
    for (let m = 0; m < r; m++) s -= ata[r * k + m]! * theta[m]!;
    theta[r] = s / ata[r * k + r]!;
  }
  for (let r = k - 1; r >= 0; r--) {
    let s = theta[r]!;
    for (let m = r + 1; m < k; m++) s -= ata[m * k + r]! * theta[m]!;
    theta[r] = s / ata[r * k + r]!;
  }
  const w = theta.slice(0, d), b = theta[d]!;
  return { w, b, loss: lossAndGradient(data, w, b).loss };
}

/**
 * The mean squared error at (w, b) and its gradient, in float64 from the f32 data: the CPU twin of
 * the WGSL kernels.
 */
export function lossAndGradient(data: RegressionData, w: ArrayLike<number>, b: number): { loss: number; gradW: Float64Array; gradB: number } {
  const { samples: n, features: d, x, y } = data;
  const gradW = new Float64Array(d);
  let sumSq = 0, sumR = 0;
  for (let i = 0; i < n; i++) {
    let r = b - y[i]!;
    for (let j = 0; j < d; j++) r += x[i * d + j]! * w[j]!;
    sumSq += r * r;
    sumR += r;
    for (let j = 0; j < d; j++) gradW[j]! += r * x[i * d + j]!;
  }
  for (let j = 0; j < d; j++) gradW[j]! *= 2 / n;
  return { loss: sumSq / n, gradW, gradB: (2 * sumR) / n };
}


/** Standard normal draws from a uniform generator (Box–Muller). */
function gaussian(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

// ---------------------------------------------------------------------------------------------
// The GPU twin

/** Invocations per workgroup of every kernel: one source for the WGSL override and the dispatch arithmetic. */
const WORKGROUP_SIZE = 64;

// GPUBufferUsage and GPUMapMode flags, spelled out so that importing this module needs no WebGPU globals.
const STORAGE = 0x80, UNIFORM = 0x40, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;

/** Anything with RMSProp's `step(encoder)`: the library's optimizer, or a test's stand-in. */
export type GpuStepper = Pick<RMSProp, 'step'>;

/**
 * The regression on a GPUDevice. It owns the data, parameter, gradient and scratch buffers; the
 * optimizer trains `params` (w and b, two buffers) from the gradient buffers `encodeLossAndGradient`
 * writes. w and b start at zero.
 *
 * @example
 * ```ts
 * const problem = new GpuLinearRegression(device, makeRegressionData());
 * const optimizer = new RMSProp(device, problem.params, { lr: 0.02 });
 * const loss = await problem.train(optimizer, 100); // the loss after 100 steps
 * ```
 */
export class GpuLinearRegression {
  readonly device: GPUDevice;
  readonly data: RegressionData;
  /** w, then b, with their gradients: what `new RMSProp(device, problem.params)` takes. */
  readonly params: ParamSpec[];
  readonly #buffers: GPUBuffer[] = [];
  readonly #w: GPUBuffer;
  readonly #b: GPUBuffer;
  readonly #gradW: GPUBuffer;
  readonly #gradB: GPUBuffer;
  readonly #loss: GPUBuffer;
  /** Where `train` copies the loss; mapped and unmapped once per call. */
  readonly #lossStaging: GPUBuffer;
  readonly #pipelines: readonly { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: [number, number] }[];
  #destroyed = false;

  constructor(device: GPUDevice, data: RegressionData) {
    const { samples: n, features: d } = data;
    // Tiles of about √N samples: the two levels of the reduction are serial loops of about √N each.
    const tile = Math.ceil(Math.sqrt(n)), tiles = Math.ceil(n / tile);
    const groups = (invocations: number) => Math.ceil(invocations / WORKGROUP_SIZE);
    const limits = device.limits;
    if (groups(n) > limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`${n} samples need ${groups(n)} workgroups, past maxComputeWorkgroupsPerDimension (${limits.maxComputeWorkgroupsPerDimension}): use fewer samples.`);
    }
    if (n * d * 4 > limits.maxStorageBufferBindingSize) {
      throw new RangeError(`X is ${n * d * 4} bytes, past maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize}): use fewer samples.`);
    }
    this.device = device;
    this.data = data;
    const buffer = (name: string, size: number, usage: number, contents?: Float32Array | Uint32Array) => {
      const b = device.createBuffer({ label: `LinearRegression.${name}`, size, usage, mappedAtCreation: contents !== undefined });
      if (contents) {
        new Uint8Array(b.getMappedRange()).set(new Uint8Array(contents.buffer, contents.byteOffset, contents.byteLength));
        b.unmap();
      }
      this.#buffers.push(b);
      return b;
    };
    const shape = buffer('shape', 16, UNIFORM, new Uint32Array([n, d, tile, tiles]));
    const x = buffer('x', n * d * 4, STORAGE, data.x);
    const y = buffer('y', n * 4, STORAGE, data.y);
    this.#w = buffer('w', d * 4, STORAGE | COPY_SRC | COPY_DST, new Float32Array(d));
    this.#b = buffer('b', 4, STORAGE | COPY_SRC | COPY_DST, new Float32Array(1));
    this.#gradW = buffer('gradW', d * 4, STORAGE | COPY_SRC);
    this.#gradB = buffer('gradB', 4, STORAGE | COPY_SRC);
    this.#loss = buffer('loss', 4, STORAGE | COPY_SRC);
    this.#lossStaging = buffer('loss.staging', 4, MAP_READ | COPY_DST);
    const residual = buffer('residual', n * 4, STORAGE);
    const partials = buffer('partials', (d + 2) * tiles * 4, STORAGE);
    this.params = [
      { param: this.#w, grad: this.#gradW, name: 'w' },
      { param: this.#b, grad: this.#gradB, name: 'b' },
    ];

    const module = device.createShaderModule({ label: 'LinearRegression.shader', code: shaderSource });
    const all: Record<number, GPUBuffer> = {
      0: shape, 1: x, 2: y, 3: this.#w, 4: this.#b, 5: residual, 6: partials, 7: this.#gradW, 8: this.#gradB, 9: this.#loss,
    };
    // Each entry point binds only what it uses ('auto' layouts leave the rest out).
    const kernel = (entryPoint: string, bindings: number[], workgroups: [number, number]) => {
      const pipeline = device.createComputePipeline({
        label: `LinearRegression.pipeline.${entryPoint}`,
        layout: 'auto',
        compute: { module, entryPoint, constants: { WORKGROUP_SIZE } },
      });
      const bindGroup = device.createBindGroup({
        label: `LinearRegression.bindGroup.${entryPoint}`,
        layout: pipeline.getBindGroupLayout(0),
        entries: bindings.map((binding) => ({ binding, resource: { buffer: all[binding]! } })),
      });
      return { pipeline, bindGroup, workgroups };
    };
    this.#pipelines = [
      kernel('forward', [0, 1, 2, 3, 4, 5], [groups(n), 1]),
      kernel('columnPartials', [0, 1, 5, 6], [groups(tiles), d + 2]), // workgroups of WORKGROUP_SIZE × 1
      kernel('finish', [0, 6, 7, 8, 9], [groups(d + 2), 1]),
    ];
  }

  /**
   * Records forward, loss and backward into `encoder` (one compute pass, three dispatches): the
   * gradient buffers and the loss then hold dL/dw, dL/db and L at the current w and b.
   */
  encodeLossAndGradient(encoder: GPUCommandEncoder): void {
    this.#checkUsable();
    const pass = encoder.beginComputePass({ label: 'LinearRegression.lossAndGradient' });
    for (const { pipeline, bindGroup, workgroups } of this.#pipelines) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups[0], workgroups[1]);
    }
    pass.end();
  }

  /**
   * Records `steps` training steps (loss and gradient, then `optimizer.step(encoder)`) into one
   * command encoder and submits it, without waiting: change `optimizer.lr` between calls.
   */
  submitSteps(optimizer: GpuStepper, steps: number): void {
    this.device.queue.submit([this.#recordSteps(optimizer, steps).finish()]);
  }

  /**
   * As `submitSteps`, then one more loss evaluation in the same encoder, read back: resolves to the
   * loss after the last step. It waits for the GPU, so call it every N steps, not every step; and
   * await each call before the next (they share one staging buffer).
   */
  async train(optimizer: GpuStepper, steps: number): Promise<number> {
    const encoder = this.#recordSteps(optimizer, steps);
    this.encodeLossAndGradient(encoder);
    encoder.copyBufferToBuffer(this.#loss, 0, this.#lossStaging, 0, 4);
    this.device.queue.submit([encoder.finish()]);
    await this.#lossStaging.mapAsync(MAP_READ);
    const loss = new Float32Array(this.#lossStaging.getMappedRange())[0]!;
    this.#lossStaging.unmap();
    return loss;
  }

  #recordSteps(optimizer: GpuStepper, steps: number): GPUCommandEncoder {
    this.#checkUsable();
    const encoder = this.device.createCommandEncoder({ label: `LinearRegression.steps(${steps})` });
    for (let s = 0; s < steps; s++) {
      this.encodeLossAndGradient(encoder);
      optimizer.step(encoder);
    }
    return encoder;
  }

  /** The loss at the current w and b (it also rewrites the gradient buffers). */
  loss(): Promise<number> {
    return this.train({ step: () => {} }, 0);
  }

  /** Reads w, b, dL/dw and dL/db back, as the GPU last wrote them. */
  async read(): Promise<{ w: Float32Array; b: number; gradW: Float32Array; gradB: number }> {
    this.#checkUsable();
    const sources = [this.#w, this.#b, this.#gradW, this.#gradB];
    const bytes = sources.reduce((sum, s) => sum + s.size, 0);
    const staging = this.device.createBuffer({ label: 'LinearRegression.read.staging', size: bytes, usage: MAP_READ | COPY_DST });
    try {
      const encoder = this.device.createCommandEncoder({ label: 'LinearRegression.read' });
      let at = 0;
      for (const s of sources) {
        encoder.copyBufferToBuffer(s, 0, staging, at, s.size);
        at += s.size;
      }
      this.device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MAP_READ);
      const all = new Float32Array(staging.getMappedRange()).slice(); // copied before unmap
      staging.unmap();
      const d = this.data.features;
      return { w: all.slice(0, d), b: all[d]!, gradW: all.slice(d + 1, 2 * d + 1), gradB: all[2 * d + 1]! };
    } finally {
      staging.destroy();
    }
  }

  /** Frees every buffer it made. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const b of this.#buffers) b.destroy();
  }

  #checkUsable(): void {
    if (this.#destroyed) throw new Error('GpuLinearRegression used after destroy(): create a new one.');
  }
}

// ---------------------------------------------------------------------------------------------
// The CPU twin

/**
 * The same problem on the CPU: loss and gradient in float64 (rounded to f32 into the gradient
 * arrays), trained by `ReferenceRMSProp`. w and b start at zero.
 *
 * @example
 * ```ts
 * const problem = new CpuLinearRegression(makeRegressionData());
 * const optimizer = new ReferenceRMSProp(problem.params, { lr: 0.02 });
 * const loss = problem.train(optimizer, 100);
 * ```
 */
export class CpuLinearRegression {
  readonly data: RegressionData;
  readonly w: Float32Array;
  readonly b = new Float32Array(1);
  readonly gradW: Float32Array;
  readonly gradB = new Float32Array(1);
  /** w, then b, with their gradients: what `new ReferenceRMSProp(problem.params)` takes. */
  readonly params: ReferenceParamSpec[];

  constructor(data: RegressionData) {
    this.data = data;
    this.w = new Float32Array(data.features);
    this.gradW = new Float32Array(data.features);
    this.params = [
      { param: this.w, grad: this.gradW, name: 'w' },
      { param: this.b, grad: this.gradB, name: 'b' },
    ];
  }

  /** Writes dL/dw and dL/db at the current w and b into the gradient arrays; returns L. */
  lossAndGradient(): number {
    const { loss, gradW, gradB } = lossAndGradient(this.data, this.w, this.b[0]!);
    this.gradW.set(gradW);
    this.gradB[0] = gradB;
    return loss;
  }

  /** `steps` training steps; returns the loss after the last one. */
  train(optimizer: Pick<ReferenceRMSProp, 'step'>, steps: number): number {
    for (let s = 0; s < steps; s++) {
      this.lossAndGradient();
      optimizer.step();
    }
    return this.lossAndGradient();
  }
}
