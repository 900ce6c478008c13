/**
 * Runs examples/tfjs-model-fit.ts on Dawn: a tfjs-layers model fitted with tfjsRMSProp on TF.js's
 * WebGPU backend. Checks that it trains, that the save holds the optimizer under its own class name
 * with TF.js's weight names, and that the model loaded from the save trains on exactly as the original.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect } from 'vitest';
import { create } from 'webgpu';
import { gpuTest, useDevice } from '../test/gpu/harness.js';
import { fitWithWebGPURMSProp } from './tfjs-model-fit.js';
import { useDeviceForTfjs } from './tfjs-variables.js';

const gpu = useDevice();

beforeAll(async () => {
  tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
  if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true, writable: true });
  }
  await useDeviceForTfjs(gpu.device);
});

gpuTest('fits, saves with the optimizer, and the loaded copy trains on as the original, bit for bit', gpu, async () => {
  const tensors = tf.memory().numTensors;
  const { losses, nextEpoch, savedOptimizer } = await fitWithWebGPURMSProp({ epochs: 20, log: () => {} });
  expect(losses).toHaveLength(20);
  // Measured on SwiftShader: 0.53 to 0.039 in 20 epochs.
  expect(losses.at(-1)!).toBeLessThan(losses[0]! / 4);
  expect(savedOptimizer.className).toBe('WebGPURMSProp');
  expect(savedOptimizer.config).toEqual({ learningRate: 0.01, decay: 0.9, momentum: 0.5, epsilon: 1e-7, centered: false, clipGradNorm: 10 });
  expect(savedOptimizer.weights).toHaveLength(1 + 2 * 6); // iter, then /rms and /momentum of the 6 weights
  expect(savedOptimizer.weights[0]).toBe('iter');
  expect(savedOptimizer.weights.slice(1, 7).every((n) => n.endsWith('/rms'))).toBe(true);
  expect(savedOptimizer.weights.slice(7).every((n) => n.endsWith('/momentum'))).toBe(true);
  expect(nextEpoch.reloaded, 'the loaded model, one more epoch').toBe(nextEpoch.original);
  expect(tf.memory().numTensors, 'no TF.js tensor leaks').toBe(tensors);
});
