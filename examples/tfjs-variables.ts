/**
 * Training a TF.js model's variables with this optimizer, on one shared GPUDevice: TF.js computes
 * the loss and gradients with its WebGPU backend, RMSProp updates the weights in place.
 *
 * This is the low-level way, with the core `RMSProp` and buffers the app owns. For TF.js's own
 * variables and tfjs-layers models, use the `webgpu-rmsprop/tfjs` entry point instead:
 * `tfjsRMSProp(tf, config)` is a `tf.Optimizer` (examples/tfjs-model-fit.ts) that does what this
 * file says cannot be done with public APIs, through the WebGPU backend's internals.
 *
 * What works, with public APIs only (TF.js 4.22):
 * - The app makes the weight buffers itself and hands them to TF.js without a copy:
 *   `tf.tensor({ buffer, zeroCopy: true }, shape)`, then `tf.variable(thatTensor)`. The variable
 *   shares the tensor's data, so TF.js reads the very buffer the optimizer writes, and TF.js
 *   never frees it (zero-copy data is "external": the app owns and destroys it).
 * - Gradients come from `tf.variableGrads(...)` as new tensors each step, in buffers of TF.js's pool.
 *   The optimizer's bind groups are made once, so the gradients need a fixed home: the app copies
 *   each one (`tensor.dataToGPU()`, then `copyBufferToBuffer`) into a gradient buffer of its own.
 *   `dataToGPU()` submits TF.js's pending work first, so the copy sees finished gradients.
 *
 * What does not work, and why:
 * - Training a variable that TF.js created (`tf.variable(tf.randomNormal(...))`): TF.js 4.22 has
 *   no public way to get the GPUBuffer behind it (`dataToGPU()` returns a copy; the buffer is
 *   only in the backend's internal `tensorMap`), and `variable.assign(x)` swaps in x's data.
 *   Make the buffers yourself (above), or copy TF.js's variables into your own once at the start.
 * - Reading a zero-copy variable with `data()`, `dataSync()` or `array()`: TF.js caches what it
 *   read on the CPU and returns that cache from then on, though the optimizer has since changed
 *   the buffer (its kernels still read the buffer, only those reads are stale). Read weights with
 *   `optimizer.readParams()`, or through an op (`tf.add(variable, 0).data()` reads the buffer anew).
 * - TF.js's WebGPU backend checks `navigator.gpu` exists. In Node (the `webgpu` package) set
 *   `globalThis.navigator = { gpu }` first; in a browser it is there.
 *
 * Run it: `npx vitest run --project examples examples/tfjs-variables.test.ts`.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients'; // autodiff (the @tensorflow/tfjs bundle imports it for you)
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { RMSProp, type RMSPropOptions } from 'webgpu-rmsprop';

/** Makes TF.js's 'webgpu' backend run on `device`, the app's (and the optimizer's) device. */
export async function useDeviceForTfjs(device: GPUDevice): Promise<void> {
  // The package registers a 'webgpu' backend that makes its own device (if navigator.gpu existed when it was imported).
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device));
  await tf.setBackend('webgpu');
}

/** A weight of the model: an app-owned buffer, TF.js's variable over it, and its gradient buffer. */
export interface SharedWeight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly buffer: GPUBuffer;
  readonly grad: GPUBuffer;
  readonly variable: tf.Variable;
}

/** Creates a weight in an app-owned buffer, visible to TF.js as a variable without a copy. */
export function sharedWeight(device: GPUDevice, name: string, shape: number[], initial: Float32Array<ArrayBuffer>): SharedWeight {
  const size = initial.byteLength;
  // TF.js needs STORAGE | COPY_SRC on zero-copy data; the optimizer needs STORAGE (and COPY_SRC to read back).
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffer = device.createBuffer({ label: `tfjs-model.${name}`, size, usage });
  const grad = device.createBuffer({ label: `tfjs-model.${name}.grad`, size, usage });
  device.queue.writeBuffer(buffer, 0, initial);
  const view = tf.tensor({ buffer, zeroCopy: true }, shape, 'float32');
  const variable = tf.variable(view, true, name); // shares view's data: the same GPUBuffer
  view.dispose();
  return { name, shape, buffer, grad, variable };
}

/**
 * One training step: TF.js computes the loss and gradients; the gradients are copied into the
 * optimizer's gradient buffers and the update recorded in the same encoder. Returns the loss
 * (a scalar tensor, still on the GPU: read it only when you log).
 */
export function trainStep(device: GPUDevice, weights: readonly SharedWeight[], optimizer: RMSProp, lossFn: () => tf.Scalar): tf.Scalar {
  const { value, grads } = tf.variableGrads(lossFn, weights.map((w) => w.variable));
  const encoder = device.createCommandEncoder({ label: 'tfjs-model.step' });
  const copies = weights.map((w) => {
    const copy = grads[w.name]!.dataToGPU(); // submits TF.js's pending work, then gives a buffer with the gradient
    encoder.copyBufferToBuffer(copy.buffer!, 0, w.grad, 0, w.grad.size);
    return copy;
  });
  optimizer.step(encoder);
  device.queue.submit([encoder.finish()]);
  // Only now, after the submit that reads them, give TF.js its buffers back.
  for (const copy of copies) copy.tensorRef.dispose();
  tf.dispose(grads);
  return value;
}

/**
 * A small regression model, `y = tanh(x W1) W2`, trained with RMSProp on TF.js-computed gradients.
 *
 * @example
 * ```ts
 * await useDeviceForTfjs(device);
 * const { losses } = await trainTfjsModel(device, { steps: 40 });
 * ```
 */
export async function trainTfjsModel(
  device: GPUDevice,
  { steps = 40, options = { lr: 0.03 }, logEvery = 10, log = console.log }:
    { steps?: number; options?: Partial<RMSPropOptions>; logEvery?: number; log?: (line: string) => void } = {},
): Promise<{ losses: { step: number; loss: number }[]; weights: Float32Array[] }> {
  const inputs = 4, hidden = 16, samples = 64;
  const random = seeded(3);
  const x = tf.tensor2d(Float32Array.from({ length: samples * inputs }, random), [samples, inputs]);
  const y = tf.tidy(() => tf.sin(tf.sum(x, 1, true))); // a smooth target the model can fit
  const weights = [
    sharedWeight(device, 'w1', [inputs, hidden], Float32Array.from({ length: inputs * hidden }, () => random() * 0.5)),
    sharedWeight(device, 'w2', [hidden, 1], Float32Array.from({ length: hidden }, () => random() * 0.5)),
  ];
  const [w1, w2] = weights.map((w) => w.variable) as [tf.Variable, tf.Variable];
  const lossFn = () => tf.losses.meanSquaredError(y, tf.matMul(tf.tanh(tf.matMul(x, w1)), w2)) as tf.Scalar;
  const optimizer = new RMSProp(device, weights.map((w) => ({ param: w.buffer, grad: w.grad, name: w.name })), options);
  const losses: { step: number; loss: number }[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const loss = trainStep(device, weights, optimizer, lossFn);
      if (step % logEvery === 0 || step === steps - 1) {
        const value = (await loss.data())[0]!; // the loss before this step's update
        losses.push({ step, loss: value });
        log(`step ${String(step).padStart(4)}  loss ${value.toExponential(3)}`);
      }
      loss.dispose();
    }
    return { losses, weights: await optimizer.readParams() };
  } finally {
    optimizer.destroy();
    tf.dispose([x, y, w1, w2]);
    for (const w of weights) {
      w.buffer.destroy(); // the app's buffers: TF.js does not free zero-copy data
      w.grad.destroy();
    }
  }
}

/** A deterministic generator of numbers in [-1, 1). */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
