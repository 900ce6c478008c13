/**
 * Two spirals, classified by a small tanh MLP (2 → 32 → 32 → 1, logistic loss): the demo's
 * non-convex problem, where RMSProp's per-parameter step sizes beat plain gradient descent by far.
 *
 * - `makeSpiralData`: the points, seeded;
 * - `GpuSpirals`: forward, loss, backward, and the decision function on a grid, all in WGSL
 *   (demo/shaders/mlp.wgsl), with the parameters and gradients in one `ParamArena` so that the
 *   optimizer's step is one dispatch; the kernels bind the arena's per-tensor views;
 * - `CpuSpirals`: its twin, the same operations in the same order in f32 (`Math.fround` after each),
 *   for `ReferenceRMSProp` when there is no WebGPU adapter, and for the tests.
 *
 * Nothing here depends on Node or the browser.
 */
import { ParamArena, type ParamSpec, type ReferenceParamSpec } from '../../src/index.js';
import shaderSource from '../shaders/mlp.wgsl?raw';
import { mulberry32 } from './random.js';

// ---------------------------------------------------------------------------------------------
// The model's shape and data

/** Hidden width, read from mlp.wgsl's `const HIDDEN` (private arrays need a WGSL const size). */
export const HIDDEN: number = (() => {
  const match = /const HIDDEN = (\d+)u;/.exec(shaderSource);
  if (!match) throw new Error('demo/shaders/mlp.wgsl has no `const HIDDEN = <n>u;` line.');
  return Number(match[1]);
})();

/** Floats of per-sample scratch: a1, a2, δ1, δ2, then δ3, the loss and z (as mlp.wgsl's STRIDE). */
export const STRIDE = 4 * HIDDEN + 3;

/** The tensors, in arena order (the order of mlp.wgsl's `gradient` columns). */
export const SPIRAL_TENSORS: readonly { name: SpiralTensor; size: number }[] = [
  { name: 'w1', size: 2 * HIDDEN },
  { name: 'b1', size: HIDDEN },
  { name: 'w2', size: HIDDEN * HIDDEN },
  { name: 'b2', size: HIDDEN },
  { name: 'w3', size: HIDDEN },
  { name: 'b3', size: 1 },
];

export type SpiralTensor = 'w1' | 'b1' | 'w2' | 'b2' | 'w3' | 'b3';
export type SpiralParams = Record<SpiralTensor, Float32Array<ArrayBuffer>>;

/** Two interleaved spirals: `x` holds N points (x0, x1), `y` their labels, +1 for one arm and -1 for the other. */
export interface SpiralData {
  readonly samples: number;
  /** N × 2, row-major. */
  readonly x: Float32Array;
  /** N labels, ±1. */
  readonly y: Float32Array;
}

export interface SpiralDataOptions {
  /** Points per arm (default 160: 320 in all). */
  pointsPerArm?: number;
  /** Turns of each arm (default 1.75). */
  turns?: number;
  /** Standard deviation of the noise added to each coordinate (default 0.03). */
  noise?: number;
  /** Seed (default 1). */
  seed?: number;
}

/** Half-width of the square the points lie in (and the grid spans): [-EXTENT, EXTENT]². */
export const EXTENT = 1.1;

/**
 * Two spirals around the origin, radius growing from 0.1 to 1, the second the first turned by π.
 *
 * @example
 * ```ts
 * const data = makeSpiralData({ pointsPerArm: 160, turns: 1.75, seed: 1 });
 * ```
 */
export function makeSpiralData(options: SpiralDataOptions = {}): SpiralData {
  const { pointsPerArm = 160, turns = 1.75, noise = 0.03, seed = 1 } = options;
  if (!Number.isSafeInteger(pointsPerArm) || pointsPerArm < 1) throw new RangeError(`pointsPerArm must be a positive integer, got ${pointsPerArm}.`);
  if (!(turns > 0)) throw new RangeError(`turns must be > 0, got ${turns}.`);
  const normal = gaussian(mulberry32(seed));
  const n = 2 * pointsPerArm;
  const x = new Float32Array(2 * n), y = new Float32Array(n);
  for (let i = 0; i < pointsPerArm; i++) {
    const t = (i + 0.5) / pointsPerArm;
    const r = 0.1 + 0.9 * t;
    for (let arm = 0; arm < 2; arm++) {
      const angle = 2 * Math.PI * turns * t + Math.PI * arm;
      const s = 2 * i + arm; // arms interleaved
      x[2 * s] = r * Math.cos(angle) + noise * normal();
      x[2 * s + 1] = r * Math.sin(angle) + noise * normal();
      y[s] = arm === 0 ? 1 : -1;
    }
  }
  return { samples: n, x, y };
}

/**
 * Initial parameters, seeded: weights uniform in ±√(6 / (fan in + fan out)) (Glorot), the first
 * layer's times `inputGain` (default 4) so that the first layer's tanh units start as sharp folds of
 * the plane rather than nearly linear ones, which a spiral needs; biases 0, except the first layer's,
 * uniform in ±`inputGain`·0.5 so that the folds do not all pass through the origin.
 *
 * @example
 * ```ts
 * const init = initialSpiralParams(1); // { w1, b1, w2, b2, w3, b3 }
 * ```
 */
export function initialSpiralParams(seed = 1, inputGain = 4): SpiralParams {
  const uniform = mulberry32(seed ^ 0x5eed);
  const fill = (size: number, bound: number) => Float32Array.from({ length: size }, () => (2 * uniform() - 1) * bound);
  const glorot = (fanIn: number, fanOut: number) => Math.sqrt(6 / (fanIn + fanOut));
  return {
    w1: fill(2 * HIDDEN, inputGain * glorot(2, HIDDEN)),
    b1: fill(HIDDEN, inputGain * 0.5),
    w2: fill(HIDDEN * HIDDEN, glorot(HIDDEN, HIDDEN)),
    b2: new Float32Array(HIDDEN),
    w3: fill(HIDDEN, glorot(HIDDEN, 1)),
    b3: new Float32Array(1),
  };
}

/** Loss and accuracy (fraction of points on their side of z = 0). */
export interface SpiralMetrics {
  loss: number;
  accuracy: number;
}

// ---------------------------------------------------------------------------------------------
// The CPU twin

const f = Math.fround;

/**
 * The MLP on the CPU, each operation rounded to f32 in mlp.wgsl's order: a twin of `GpuSpirals`
 * (up to the last bits of tanh, exp and log, whose WGSL precision is the implementation's).
 *
 * @example
 * ```ts
 * const problem = new CpuSpirals(makeSpiralData());
 * const optimizer = new ReferenceRMSProp(problem.params, { lr: 0.01 });
 * const { loss, accuracy } = problem.train(optimizer, 100);
 * ```
 */
export class CpuSpirals {
  readonly data: SpiralData;
  /** The parameters, one Float32Array per tensor; trained in place. */
  readonly values: SpiralParams;
  readonly grads: SpiralParams;
  /** Per-sample activations and deltas as mlp.wgsl's `sample` writes them (N × STRIDE). */
  readonly scratch: Float32Array;
  /** `{ param, grad, name }` per tensor, in arena order: what `new ReferenceRMSProp(problem.params)` takes. */
  readonly params: ReferenceParamSpec[];

  constructor(data: SpiralData, init: SpiralParams = initialSpiralParams()) {
    this.data = data;
    this.values = copyParams(init);
    this.grads = copyParams(init, true);
    this.scratch = new Float32Array(data.samples * STRIDE);
    this.params = SPIRAL_TENSORS.map(({ name }) => ({ param: this.values[name], grad: this.grads[name], name }));
  }

  /** z at (x0, x1), filling a1 and a2 (mlp.wgsl's `forwardTo`). */
  #forward(x0: number, x1: number, a1: Float32Array, a2: Float32Array): number {
    const { w1, b1, w2, b2, w3, b3 } = this.values;
    for (let j = 0; j < HIDDEN; j++) {
      let pre = b1[j]!;
      pre = f(pre + f(w1[2 * j]! * x0));
      pre = f(pre + f(w1[2 * j + 1]! * x1));
      a1[j] = Math.tanh(pre);
    }
    for (let j = 0; j < HIDDEN; j++) {
      let pre = b2[j]!;
      for (let k = 0; k < HIDDEN; k++) pre = f(pre + f(w2[j * HIDDEN + k]! * a1[k]!));
      a2[j] = Math.tanh(pre);
    }
    let z = b3[0]!;
    for (let k = 0; k < HIDDEN; k++) z = f(z + f(w3[k]! * a2[k]!));
    return z;
  }

  /** Writes the gradient of the mean loss into `grads`; returns the loss and the accuracy. */
  lossAndGradient(): SpiralMetrics {
    const { samples: n, x, y } = this.data;
    const s = this.scratch, H = HIDDEN;
    const a1 = new Float32Array(H), a2 = new Float32Array(H), d2 = new Float32Array(H);
    const { w2, w3 } = this.values;
    for (let i = 0; i < n; i++) {
      const yi = y[i]!;
      const z = this.#forward(x[2 * i]!, x[2 * i + 1]!, a1, a2);
      const m = f(-yi * z);
      const e = f(Math.exp(-Math.abs(m)));
      const onePlusE = f(1 + e);
      const loss = f(Math.max(m, 0) + f(Math.log(onePlusE)));
      const sigma = m < 0 ? f(e / onePlusE) : f(1 / onePlusE);
      const d3 = f(-yi * sigma);
      for (let j = 0; j < H; j++) d2[j] = f(f(d3 * w3[j]!) * f(1 - f(a2[j]! * a2[j]!)));
      const row = i * STRIDE;
      for (let k = 0; k < H; k++) {
        let back = 0;
        for (let j = 0; j < H; j++) back = f(back + f(w2[j * H + k]! * d2[j]!));
        s[row + k] = a1[k]!;
        s[row + H + k] = a2[k]!;
        s[row + 2 * H + k] = f(back * f(1 - f(a1[k]! * a1[k]!)));
        s[row + 3 * H + k] = d2[k]!;
      }
      s[row + 4 * H] = d3;
      s[row + 4 * H + 1] = loss;
      s[row + 4 * H + 2] = z;
    }
    // The `gradient` kernel's columns, each summed over the samples in order, then divided by N.
    const column = (term: (row: number, i: number) => number) => {
      let sum = 0;
      for (let i = 0; i < n; i++) sum = f(sum + term(i * STRIDE, i));
      return f(sum / n);
    };
    const g = this.grads;
    for (let c = 0; c < 2 * H; c++) g.w1[c] = column((r, i) => f(s[r + 2 * H + (c >> 1)]! * x[2 * i + (c & 1)]!));
    for (let j = 0; j < H; j++) g.b1[j] = column((r) => s[r + 2 * H + j]!);
    for (let c = 0; c < H * H; c++) {
      const j = Math.floor(c / H), k = c % H;
      g.w2[c] = column((r) => f(s[r + 3 * H + j]! * s[r + k]!));
    }
    for (let j = 0; j < H; j++) g.b2[j] = column((r) => s[r + 3 * H + j]!);
    for (let k = 0; k < H; k++) g.w3[k] = column((r) => f(s[r + 4 * H]! * s[r + H + k]!));
    g.b3[0] = column((r) => s[r + 4 * H]!);
    let sum = 0, right = 0;
    for (let i = 0; i < n; i++) {
      sum = f(sum + s[i * STRIDE + 4 * H + 1]!);
      if (y[i]! * s[i * STRIDE + 4 * H + 2]! > 0) right++;
    }
    return { loss: f(sum / n), accuracy: f(right / n) };
  }

  /** `steps` steps of `optimizer`; returns the loss and accuracy after the last one. */
  train(optimizer: { step(): void }, steps: number): SpiralMetrics {
    for (let s = 0; s < steps; s++) {
      this.lossAndGradient();
      optimizer.step();
    }
    return this.lossAndGradient();
  }

  /** z on a `grid` × `grid` lattice over [-EXTENT, EXTENT]², rows from the top (as mlp.wgsl's `grid`). */
  evaluateGrid(grid: number): Float32Array {
    const out = new Float32Array(grid * grid);
    const a1 = new Float32Array(HIDDEN), a2 = new Float32Array(HIDDEN);
    const step = f(f(EXTENT - f(-EXTENT)) / grid);
    for (let v = 0; v < grid; v++) {
      for (let u = 0; u < grid; u++) {
        const x0 = f(f(-EXTENT) + f(f(u + 0.5) * step));
        const x1 = f(f(EXTENT) - f(f(v + 0.5) * step));
        out[v * grid + u] = this.#forward(x0, x1, a1, a2);
      }
    }
    return out;
  }
}

function copyParams(p: SpiralParams, zero = false): SpiralParams {
  const out = {} as SpiralParams;
  for (const { name, size } of SPIRAL_TENSORS) out[name] = zero ? new Float32Array(size) : Float32Array.from(p[name]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The GPU twin

/** Invocations per workgroup: one source for the WGSL override and the dispatch arithmetic. */
const WORKGROUP_SIZE = 64;
const STORAGE = 0x80, UNIFORM = 0x40, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;
/** Total parameter count (the `gradient` kernel's columns). */
export const SPIRAL_PARAMETERS = SPIRAL_TENSORS.reduce((sum, t) => sum + t.size, 0);

/** Anything with `step(encoder)`: the library's RMSProp, GpuSgd, or a test's stand-in. */
export interface GpuStepper {
  step(encoder?: GPUCommandEncoder): void;
}

/**
 * The MLP on a GPUDevice. Its parameters and gradients are one `ParamArena` (`arena`), so
 * `new RMSProp(device, problem.params)` steps the whole model in one dispatch; its own kernels bind
 * the arena's per-tensor views.
 *
 * @example
 * ```ts
 * const problem = new GpuSpirals(device, makeSpiralData());
 * const optimizer = new RMSProp(device, problem.params, { lr: 0.01 });
 * const { loss, accuracy } = await problem.train(optimizer, 100);
 * const z = await problem.evaluateGrid(); // 64 × 64 values of the decision function
 * ```
 */
export class GpuSpirals {
  readonly device: GPUDevice;
  readonly data: SpiralData;
  /** The parameters and gradients: one buffer each, a view per tensor. */
  readonly arena: ParamArena;
  /** The arena's specs, in order: what `new RMSProp(device, problem.params)` takes. */
  readonly params: ParamSpec[];
  /** Grid side of `evaluateGrid`. */
  readonly grid: number;
  readonly #buffers: GPUBuffer[] = [];
  readonly #scratch: GPUBuffer;
  readonly #metrics: GPUBuffer;
  readonly #metricsStaging: GPUBuffer;
  readonly #field: GPUBuffer;
  readonly #fieldStaging: GPUBuffer;
  readonly #passes: Record<'sample' | 'gradient' | 'loss' | 'grid', { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: number }>;
  #destroyed = false;

  constructor(device: GPUDevice, data: SpiralData, init: SpiralParams = initialSpiralParams(), options: { grid?: number; label?: string } = {}) {
    const { grid = 64, label = 'Spirals' } = options;
    const n = data.samples;
    const groups = (invocations: number) => Math.ceil(invocations / WORKGROUP_SIZE);
    if (groups(Math.max(n, grid * grid, SPIRAL_PARAMETERS)) > device.limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`GpuSpirals: ${n} samples or a ${grid}² grid need more workgroups than maxComputeWorkgroupsPerDimension allows: use fewer.`);
    }
    this.device = device;
    this.data = data;
    this.grid = grid;
    const buffer = (name: string, size: number, usage: number, contents?: ArrayBufferView) => {
      const b = device.createBuffer({ label: `${label}.${name}`, size: Math.max(size, 16), usage, mappedAtCreation: contents !== undefined });
      if (contents) {
        new Uint8Array(b.getMappedRange()).set(new Uint8Array(contents.buffer, contents.byteOffset, contents.byteLength));
        b.unmap();
      }
      this.#buffers.push(b);
      return b;
    };
    const shape = new ArrayBuffer(16);
    new Uint32Array(shape, 0, 2).set([n, grid]);
    new Float32Array(shape, 8, 2).set([-EXTENT, EXTENT]);
    const shapeBuffer = buffer('shape', 16, UNIFORM, new Uint8Array(shape));
    const packed = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) packed.set([data.x[2 * i]!, data.x[2 * i + 1]!, data.y[i]!], 3 * i);
    const dataBuffer = buffer('data', packed.byteLength, STORAGE, packed);
    const scratch = (this.#scratch = buffer('scratch', n * STRIDE * 4, STORAGE | COPY_SRC));
    this.#metrics = buffer('metrics', 8, STORAGE | COPY_SRC);
    this.#metricsStaging = buffer('metrics.staging', 8, MAP_READ | COPY_DST);
    this.#field = buffer('field', grid * grid * 4, STORAGE | COPY_SRC);
    this.#fieldStaging = buffer('field.staging', grid * grid * 4, MAP_READ | COPY_DST);

    this.arena = new ParamArena(device, SPIRAL_TENSORS, `${label}.arena`);
    this.params = this.arena.specs();
    this.writeParams(init);

    const module = device.createShaderModule({ label: `${label}.shader`, code: shaderSource });
    const view = (name: SpiralTensor, which: 'param' | 'grad') => this.arena.tensor(name)[which];
    const resources: Record<number, GPUBufferBinding> = {
      0: { buffer: shapeBuffer },
      1: { buffer: dataBuffer },
      2: view('w1', 'param'), 3: view('b1', 'param'), 4: view('w2', 'param'), 5: view('b2', 'param'), 6: view('w3', 'param'), 7: view('b3', 'param'),
      8: { buffer: scratch },
      9: view('w1', 'grad'), 10: view('b1', 'grad'), 11: view('w2', 'grad'), 12: view('b2', 'grad'), 13: view('w3', 'grad'), 14: view('b3', 'grad'),
      15: { buffer: this.#metrics },
      16: { buffer: this.#field },
    };
    // Each entry point binds only what it uses ('auto' layouts leave the rest out): at most 8
    // storage buffers each, the default maxStorageBuffersPerShaderStage.
    const kernel = (entryPoint: 'sample' | 'gradient' | 'loss' | 'grid', bindings: number[], workgroups: number) => {
      const pipeline = device.createComputePipeline({
        label: `${label}.pipeline.${entryPoint}`,
        layout: 'auto',
        compute: { module, entryPoint, constants: entryPoint === 'loss' ? {} : { WORKGROUP_SIZE } },
      });
      const bindGroup = device.createBindGroup({
        label: `${label}.bindGroup.${entryPoint}`,
        layout: pipeline.getBindGroupLayout(0),
        entries: bindings.map((binding) => ({ binding, resource: resources[binding]! })),
      });
      return { pipeline, bindGroup, workgroups };
    };
    this.#passes = {
      sample: kernel('sample', [0, 1, 2, 3, 4, 5, 6, 7, 8], groups(n)),
      gradient: kernel('gradient', [0, 1, 8, 9, 10, 11, 12, 13, 14], groups(SPIRAL_PARAMETERS)),
      loss: kernel('loss', [0, 1, 8, 15], 1),
      grid: kernel('grid', [0, 2, 3, 4, 5, 6, 7, 16], groups(grid * grid)),
    };
  }

  /** Replaces the parameters (e.g. to restart from `initialSpiralParams`); the optimizer's state is the optimizer's. */
  writeParams(values: SpiralParams): void {
    this.#checkUsable();
    for (const { name, size } of SPIRAL_TENSORS) {
      const v = values[name];
      if (!(v instanceof Float32Array) || v.length !== size) throw new RangeError(`GpuSpirals.writeParams: ${name} must be a Float32Array of ${size} elements.`);
      this.device.queue.writeBuffer(this.arena.params, this.arena.tensor(name).offset, v);
    }
  }

  #run(encoder: GPUCommandEncoder, names: readonly ('sample' | 'gradient' | 'loss' | 'grid')[], label: string): void {
    const pass = encoder.beginComputePass({ label });
    for (const name of names) {
      const { pipeline, bindGroup, workgroups } = this.#passes[name];
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups);
    }
    pass.end();
  }

  /** Records forward, loss and backward: the arena's gradients then hold dL/dθ, the metrics buffer L and the accuracy. */
  encodeLossAndGradient(encoder: GPUCommandEncoder): void {
    this.#checkUsable();
    this.#run(encoder, ['sample', 'gradient', 'loss'], 'Spirals.lossAndGradient');
  }

  #recordSteps(optimizer: GpuStepper, steps: number): GPUCommandEncoder {
    this.#checkUsable();
    const encoder = this.device.createCommandEncoder({ label: `Spirals.steps(${steps})` });
    for (let s = 0; s < steps; s++) {
      this.#run(encoder, ['sample', 'gradient'], 'Spirals.lossAndGradient');
      optimizer.step(encoder);
    }
    return encoder;
  }

  /** Records `steps` steps (gradient, then `optimizer.step(encoder)`) into one command buffer and submits it, without waiting. */
  submitSteps(optimizer: GpuStepper, steps: number): void {
    this.device.queue.submit([this.#recordSteps(optimizer, steps).finish()]);
  }

  /**
   * As `submitSteps`, then the loss and accuracy after the last step, read back. Await each call
   * before the next (they share one staging buffer).
   */
  async train(optimizer: GpuStepper, steps: number): Promise<SpiralMetrics> {
    const encoder = this.#recordSteps(optimizer, steps);
    this.encodeLossAndGradient(encoder);
    encoder.copyBufferToBuffer(this.#metrics, 0, this.#metricsStaging, 0, 8);
    this.device.queue.submit([encoder.finish()]);
    await this.#metricsStaging.mapAsync(MAP_READ);
    const [loss, accuracy] = new Float32Array(this.#metricsStaging.getMappedRange());
    this.#metricsStaging.unmap();
    return { loss: loss!, accuracy: accuracy! };
  }

  /** The loss and accuracy at the current parameters (it also rewrites the gradients). */
  metrics(): Promise<SpiralMetrics> {
    return this.train({ step: () => {} }, 0);
  }

  /** z on the `grid` × `grid` lattice over [-EXTENT, EXTENT]², row-major from the top row. Await each call before the next. */
  async evaluateGrid(): Promise<Float32Array> {
    this.#checkUsable();
    const encoder = this.device.createCommandEncoder({ label: 'Spirals.grid' });
    this.#run(encoder, ['grid'], 'Spirals.grid');
    encoder.copyBufferToBuffer(this.#field, 0, this.#fieldStaging, 0, this.grid * this.grid * 4);
    this.device.queue.submit([encoder.finish()]);
    await this.#fieldStaging.mapAsync(MAP_READ);
    const out = new Float32Array(this.#fieldStaging.getMappedRange()).slice(); // copied before unmap
    this.#fieldStaging.unmap();
    return out;
  }

  /** Reads the parameters and gradients back (per tensor) and the per-sample scratch, as the GPU last wrote them. */
  async read(): Promise<{ params: SpiralParams; grads: SpiralParams; scratch: Float32Array }> {
    this.#checkUsable();
    const { params, grads } = this.arena;
    const scratch = this.#scratch;
    const staging = this.device.createBuffer({ label: 'Spirals.read.staging', size: params.size + grads.size + scratch.size, usage: MAP_READ | COPY_DST });
    try {
      const encoder = this.device.createCommandEncoder({ label: 'Spirals.read' });
      encoder.copyBufferToBuffer(params, 0, staging, 0, params.size);
      encoder.copyBufferToBuffer(grads, 0, staging, params.size, grads.size);
      encoder.copyBufferToBuffer(scratch, 0, staging, params.size + grads.size, scratch.size);
      this.device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MAP_READ);
      const bytes = staging.getMappedRange();
      const take = (base: number): SpiralParams => {
        const out = {} as SpiralParams;
        for (const t of this.arena.tensors) out[t.name as SpiralTensor] = new Float32Array(bytes, base + t.offset, t.size).slice();
        return out;
      };
      const result = { params: take(0), grads: take(params.size), scratch: new Float32Array(bytes, params.size + grads.size, this.data.samples * STRIDE).slice() };
      staging.unmap();
      return result;
    } finally {
      staging.destroy();
    }
  }

  /** Frees every buffer it made, the arena's included. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const b of this.#buffers) b.destroy();
    this.arena.destroy();
  }

  #checkUsable(): void {
    if (this.#destroyed) throw new Error('GpuSpirals used after destroy(): create a new one.');
  }
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32 is in ./random.ts)

function gaussian(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
