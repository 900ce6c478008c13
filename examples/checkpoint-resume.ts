/**
 * Checkpoint to a file and resume, in Node: the app saves the optimizer's state (`stateDict()`) and
 * its weights (`readParams()`) to one safetensors file, and a later process rebuilds both from it and
 * trains on as if it had never stopped: bit for bit the same weights as a run without the pause.
 *
 * safetensors (https://github.com/huggingface/safetensors) is a JSON header and raw little-endian
 * f32 data; Python reads the same file (`safetensors.numpy.load_file`). The state tensors carry
 * PyTorch's names: `w.square_avg`, `w.momentum_buffer`, ...
 *
 * Run it: `npx vitest run --project examples examples/checkpoint-resume.test.ts`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { RMSProp, safetensorsToParams, safetensorsToStateDict, stateDictToSafetensors } from 'webgpu-rmsprop';
import { LinearRegression, type Dataset } from './bring-your-own-buffers.js';

/** Trains `model` for `steps` steps with `optimizer` (the app's kernels, then the update, one submit each). */
export function trainSteps(device: GPUDevice, model: LinearRegression, optimizer: RMSProp, steps: number): void {
  for (let i = 0; i < steps; i++) {
    const encoder = device.createCommandEncoder({ label: `train step ${optimizer.stepCount}` });
    model.record(encoder);
    optimizer.step(encoder);
    device.queue.submit([encoder.finish()]);
  }
}

/** The app's optimizer over its model: the same names, order and options at save and at resume. */
export function createOptimizer(device: GPUDevice, model: LinearRegression): RMSProp {
  return new RMSProp(device, [
    { param: model.w, grad: model.gradW, name: 'w' },
    { param: model.b, grad: model.gradB, name: 'b' },
  ], { lr: 0.02, momentum: 0.9 });
}

/**
 * Saves the optimizer's state and the weights it trains to `path`.
 *
 * @example
 * ```ts
 * await saveCheckpoint('run.safetensors', optimizer);
 * ```
 */
export async function saveCheckpoint(path: string, optimizer: RMSProp): Promise<void> {
  // Both wait for the steps submitted so far.
  const [state, params] = await Promise.all([optimizer.stateDict(), optimizer.readParams()]);
  await writeFile(path, stateDictToSafetensors(state, { params }));
}

/**
 * A new model and optimizer in the state saved at `path`: the next step is the one the saved run
 * would have taken.
 *
 * @example
 * ```ts
 * const { model, optimizer } = await resumeFromCheckpoint(device, data, 'run.safetensors');
 * trainSteps(device, model, optimizer, 100);
 * ```
 */
export async function resumeFromCheckpoint(device: GPUDevice, data: Dataset, path: string): Promise<{ model: LinearRegression; optimizer: RMSProp }> {
  const bytes = new Uint8Array(await readFile(path));
  const state = safetensorsToStateDict(bytes); // checks the file's layout, names and options
  const [w, b] = safetensorsToParams(bytes);
  const model = new LinearRegression(device, data);
  device.queue.writeBuffer(model.w, 0, w!);
  device.queue.writeBuffer(model.b, 0, b!);
  const optimizer = createOptimizer(device, model);
  optimizer.loadStateDict(state); // checks names, sizes and options against this optimizer before it changes anything
  return { model, optimizer };
}
