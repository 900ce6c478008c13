/**
 * Bring your own buffers: an app's own WGSL kernels compute a model's loss and gradients into
 * buffers the app owns, and the optimizer's step is recorded into the same command encoder, right
 * after them. One submit per training step; nothing is read back until the app asks.
 *
 * The model is linear regression, `y ≈ x · w + b`, with a mean-squared-error loss. Two kernels:
 * `residuals` (one invocation per sample) and `gradients` (one invocation per parameter element).
 *
 * Run it: `npx vitest run --project examples examples/bring-your-own-buffers.test.ts`.
 */
import { RMSProp } from 'webgpu-rmsprop';

/** The app's kernels. In an app they would live in a .wgsl file; here they are inline to keep the example in one file. */
const LINEAR_REGRESSION_WGSL = /* wgsl */ `
override SAMPLES: u32;
override FEATURES: u32;

@group(0) @binding(0) var<storage, read> x: array<f32>;       // SAMPLES x FEATURES, row-major
@group(0) @binding(1) var<storage, read> y: array<f32>;       // SAMPLES
@group(0) @binding(2) var<storage, read> w: array<f32>;       // FEATURES (the optimizer's param)
@group(0) @binding(3) var<storage, read> b: array<f32>;       // 1 (the optimizer's param)
@group(0) @binding(4) var<storage, read_write> r: array<f32>; // SAMPLES: prediction - target

@compute @workgroup_size(64)
fn residuals(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= SAMPLES) { return; }
  var prediction = b[0];
  for (var j = 0u; j < FEATURES; j++) { prediction += x[i * FEATURES + j] * w[j]; }
  r[i] = prediction - y[i];
}

@group(0) @binding(5) var<storage, read_write> gradW: array<f32>; // FEATURES (the optimizer's grad)
@group(0) @binding(6) var<storage, read_write> gradB: array<f32>; // 1 (the optimizer's grad)
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;  // 1

// d/dw_j mean((x·w + b - y)^2) = 2/N sum_i r_i x_ij; invocation FEATURES does the bias and the loss.
@compute @workgroup_size(64)
fn gradients(@builtin(global_invocation_id) id: vec3u) {
  let j = id.x;
  if (j > FEATURES) { return; }
  var sum = 0.0;
  var squares = 0.0;
  for (var i = 0u; i < SAMPLES; i++) {
    let ri = r[i];
    if (j < FEATURES) { sum += ri * x[i * FEATURES + j]; } else { sum += ri; squares += ri * ri; }
  }
  let scale = 2.0 / f32(SAMPLES);
  if (j < FEATURES) { gradW[j] = scale * sum; } else { gradB[0] = scale * sum; loss[0] = squares / f32(SAMPLES); }
}
`;

/** A data set: `samples` rows of `features` inputs and one target each. */
export interface Dataset {
  readonly x: Float32Array<ArrayBuffer>;
  readonly y: Float32Array<ArrayBuffer>;
  readonly samples: number;
  readonly features: number;
}

/** The app's model: its parameters, gradients and loss live in buffers it made and owns. */
export class LinearRegression {
  readonly w: GPUBuffer;
  readonly b: GPUBuffer;
  readonly gradW: GPUBuffer;
  readonly gradB: GPUBuffer;
  readonly loss: GPUBuffer;
  readonly #buffers: GPUBuffer[];
  readonly #passes: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: number }[];

  constructor(readonly device: GPUDevice, readonly data: Dataset) {
    const { samples, features } = data;
    // STORAGE for the kernels and the optimizer, COPY_SRC so that the optimizer can read them back.
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffer = (label: string, floats: number) => device.createBuffer({ label: `linear-regression.${label}`, size: floats * 4, usage });
    const x = buffer('x', samples * features);
    const y = buffer('y', samples);
    const r = buffer('r', samples);
    this.w = buffer('w', features); // starts at zero
    this.b = buffer('b', 1);
    this.gradW = buffer('gradW', features);
    this.gradB = buffer('gradB', 1);
    this.loss = buffer('loss', 1);
    this.#buffers = [x, y, r, this.w, this.b, this.gradW, this.gradB, this.loss];
    device.queue.writeBuffer(x, 0, data.x);
    device.queue.writeBuffer(y, 0, data.y);

    const module = device.createShaderModule({ label: 'linear-regression', code: LINEAR_REGRESSION_WGSL });
    const constants = { SAMPLES: samples, FEATURES: features };
    // Pipelines and bind groups are made once, like the optimizer's: a training step only records.
    // ('auto' layouts hold just the bindings that an entry point uses.)
    const kernel = (entryPoint: string, bindings: [number, GPUBuffer][], invocations: number) => {
      const pipeline = device.createComputePipeline({ label: `linear-regression.${entryPoint}`, layout: 'auto', compute: { module, entryPoint, constants } });
      const bindGroup = device.createBindGroup({
        label: `linear-regression.${entryPoint}`,
        layout: pipeline.getBindGroupLayout(0),
        entries: bindings.map(([binding, buffer]) => ({ binding, resource: { buffer } })),
      });
      return { pipeline, bindGroup, workgroups: Math.ceil(invocations / 64) };
    };
    this.#passes = [
      kernel('residuals', [[0, x], [1, y], [2, this.w], [3, this.b], [4, r]], samples),
      kernel('gradients', [[0, x], [4, r], [5, this.gradW], [6, this.gradB], [7, this.loss]], features + 1),
    ];
  }

  /** Records forward and backward: afterwards gradW, gradB and loss hold this step's values. */
  record(encoder: GPUCommandEncoder): void {
    const pass = encoder.beginComputePass({ label: 'linear-regression.forward-backward' });
    for (const { pipeline, bindGroup, workgroups } of this.#passes) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups);
    }
    pass.end();
  }

  /** Frees the model's buffers. */
  destroy(): void {
    for (const b of this.#buffers) b.destroy();
  }
}

/**
 * A synthetic data set: inputs uniform in [-1, 1), targets from fixed weights and bias (no noise),
 * so the loss can go to about zero. Deterministic (a small LCG), so every run trains the same.
 */
export function makeDataset(samples = 256, features = 8, seed = 1): Dataset & { trueW: Float32Array; trueB: number } {
  let state = seed >>> 0;
  const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const trueW = Float32Array.from({ length: features }, random);
  const trueB = 0.5;
  const x = Float32Array.from({ length: samples * features }, random);
  const y = Float32Array.from({ length: samples }, (_, i) => trueW.reduce((sum, wj, j) => sum + wj * x[i * features + j]!, trueB));
  return { x, y, samples, features, trueW, trueB };
}

/**
 * Trains the model: each step records the app's forward/backward pass and the optimizer's update
 * into one encoder and submits it. Reads the loss back every `logEvery` steps (the only readback).
 *
 * @example
 * ```ts
 * const { losses, w, b } = await train(device, makeDataset(), { steps: 300 });
 * ```
 */
export async function train(
  device: GPUDevice,
  data: Dataset,
  { steps = 300, lr = 0.02, logEvery = 50, log = console.log }: { steps?: number; lr?: number; logEvery?: number; log?: (line: string) => void } = {},
): Promise<{ losses: { step: number; loss: number }[]; w: Float32Array; b: number }> {
  const model = new LinearRegression(device, data);
  const optimizer = new RMSProp(device, [
    { param: model.w, grad: model.gradW, name: 'w' },
    { param: model.b, grad: model.gradB, name: 'b' },
  ], { lr });
  const losses: { step: number; loss: number }[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const encoder = device.createCommandEncoder({ label: `train step ${step}` });
      model.record(encoder); // the app's kernels write gradW and gradB ...
      optimizer.step(encoder); // ... and the update reads them, in the same submit
      device.queue.submit([encoder.finish()]);
      if (step % logEvery === 0 || step === steps - 1) {
        const loss = (await readFloats(device, model.loss))[0]!; // the loss before this step's update
        losses.push({ step, loss });
        log(`step ${String(step).padStart(4)}  loss ${loss.toExponential(3)}`);
      }
    }
    const [w, b] = await optimizer.readParams();
    return { losses, w: w!, b: b![0]! };
  } finally {
    optimizer.destroy(); // frees the optimizer's state; the model's buffers stay the app's
    model.destroy();
  }
}

/** Copies a buffer (COPY_SRC usage) back to the CPU through a staging buffer. */
export async function readFloats(device: GPUDevice, buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ label: `${buffer.label}.readback`, size: buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: `${buffer.label}.readback` });
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const copy = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return copy;
  } finally {
    staging.destroy();
  }
}
