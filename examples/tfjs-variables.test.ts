/**
 * Runs examples/tfjs-variables.ts on Dawn: TF.js 4.22's WebGPU backend and RMSProp on one device.
 * Checks that it trains, that the optimizer steps on exactly TF.js's gradients (as the CPU reference
 * given them does, at the adapter's tolerance), that TF.js sees the updated weights, and the caveat the example
 * documents (TF.js's CPU cache of a variable it has read goes stale).
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect } from 'vitest';
import { create } from 'webgpu';
import { RMSProp } from 'webgpu-rmsprop';
import { cpuTwin, expectBitExact, expectMatchesTwin, gpuTest, readFloats, useDevice } from '../test/gpu/harness.js';
import { sharedWeight, trainStep, trainTfjsModel, useDeviceForTfjs } from './tfjs-variables.js';

const gpu = useDevice();

beforeAll(async () => {
  tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
  // TF.js's WebGPU backend checks that navigator.gpu exists (Node 20 has no navigator at all).
  if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true, writable: true });
  }
  await useDeviceForTfjs(gpu.device);
});

gpuTest('trains a TF.js model\'s weights with RMSProp on the shared device', gpu, async (device) => {
  const tensorsBefore = tf.memory().numTensors;
  const { losses, weights } = await trainTfjsModel(device, { steps: 40, options: { lr: 0.03 }, log: () => {} });
  // Measured on SwiftShader: 0.235 to 0.0333 in 40 steps.
  expect(losses.at(-1)!.loss).toBeLessThan(losses[0]!.loss / 4);
  expect(weights.map((w) => w.length)).toEqual([64, 16]);
  expect(tf.memory().numTensors, 'no TF.js tensor leaks').toBe(tensorsBefore);
});

gpuTest('steps on TF.js\'s gradients exactly as the reference does; TF.js sees the new weights', gpu, async (device) => {
  const x = tf.tensor2d([0.5, -1, 2, 0.25, 1, -0.5], [3, 2]);
  const y = tf.tensor2d([1, -1, 0.5], [3, 1]);
  const weight = sharedWeight(device, 'w', [2, 1], new Float32Array([0.1, -0.2]));
  const lossFn = () => tf.losses.meanSquaredError(y, tf.matMul(x, weight.variable)) as tf.Scalar;
  const options = { lr: 0.05, momentum: 0.5 };
  const optimizer = new RMSProp(device, [{ param: weight.buffer, grad: weight.grad, name: 'w' }], options);
  try {
    for (let step = 0; step < 4; step++) {
      const state = await optimizer.stateDict();
      const [before] = await optimizer.readParams();
      // TF.js's gradient at these weights, read through TF.js (its kernels are deterministic).
      const expected = tf.tidy(() => tf.variableGrads(lossFn, [weight.variable]).grads['w']!);
      const tfjsGrad = new Float32Array(await expected.data());
      expected.dispose();
      trainStep(device, [weight], optimizer, lossFn).dispose();
      expectBitExact(await readFloats(device, weight.grad), tfjsGrad, `the gradient the optimizer saw at step ${step + 1}`);
      const twin = cpuTwin([{ param: before!, grad: tfjsGrad, name: 'w' }], options);
      twin.loadStateDict(state);
      twin.step();
      const [after] = await optimizer.readParams();
      await expectMatchesTwin(optimizer, twin, `w after step ${step + 1}`);
      // TF.js reads the buffer the optimizer wrote: through an op, its view is the new weights.
      const seen = tf.tidy(() => tf.add(weight.variable, 0));
      expectBitExact(new Float32Array(await seen.data()), after!, 'the weights TF.js computes with');
      seen.dispose();
    }
  } finally {
    optimizer.destroy();
    tf.dispose([x, y, weight.variable]);
    weight.buffer.destroy();
    weight.grad.destroy();
  }
});

gpuTest('caveat: once TF.js has read a variable, its data() is a stale CPU cache', gpu, async (device) => {
  const weight = sharedWeight(device, 'cached', [4], new Float32Array([1, 2, 3, 4]));
  const optimizer = new RMSProp(device, [{ param: weight.buffer, grad: weight.grad, name: 'cached' }], { lr: 0.1 });
  try {
    const read = new Float32Array(await weight.variable.data()); // TF.js now caches these values
    device.queue.writeBuffer(weight.grad, 0, new Float32Array([1, 1, 1, 1]));
    optimizer.step();
    const [updated] = await optimizer.readParams();
    expect(Array.from(updated!)).not.toEqual(Array.from(read));
    // TF.js 4.22 returns its cache, not the buffer: read weights with readParams() or through an op.
    expect(Array.from(await weight.variable.data())).toEqual(Array.from(read));
    const throughOp = tf.tidy(() => tf.add(weight.variable, 0));
    expectBitExact(new Float32Array(await throughOp.data()), updated!, 'an op reads the buffer anew');
    throughOp.dispose();
  } finally {
    optimizer.destroy();
    weight.variable.dispose();
    weight.buffer.destroy();
    weight.grad.destroy();
  }
});
