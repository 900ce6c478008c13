/**
 * No tensor or GPU buffer leaks (issue 12, item 3): over 100 training steps of a tfjs-layers model,
 * `tf.memory()` (tensors, and the bytes TF.js's WebGPU backend has allocated) and the count of live
 * GPU buffers on the device stay flat, in both write paths (in place; a new buffer of TF.js's every
 * step, when the weights are read with data() after each); and dispose() frees what it made.
 */
import { expect } from 'vitest';
import { tfjsRMSProp } from '../../src/tfjs/index.js';
import { gpuTest } from '../gpu/harness.js';
import { tf, tfl, trackBuffers, useTfjs } from './harness.js';
import { lossOf, makeData, makeModel, readWeights } from './models.js';

const gpu = useTfjs();

/** What must stay flat. */
function counts(live: () => number) {
  const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
  return { tensors: m.numTensors, dataBuffers: m.numDataBuffers, gpuBytesAllocated: m.numBytesAllocatedInGPU, liveGpuBuffers: live() };
}

gpuTest('100 steps: tf.memory() and the live GPU buffers stay flat; dispose() frees what the optimizer made', gpu, async (device) => {
  const buffers = trackBuffers(device);
  try {
    const start = counts(buffers.live);
    const model = makeModel(tf, tfl, 'conv', 4);
    const data = makeData(tf, 'conv', 8);
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.9 });
    model.compile({ optimizer, loss: lossOf('conv') });
    for (const read of [false, true]) {
      const step = async () => {
        await model.trainOnBatch(data.x, data.y);
        if (read) await readWeights(tf, model, 'data'); // TF.js keeps a CPU copy: the next step writes a new buffer
      };
      for (let s = 0; s < 10; s++) await step(); // TF.js fills its pools; the optimizer builds at the first step
      const before = counts(buffers.live);
      for (let s = 0; s < 100; s++) await step();
      await device.queue.onSubmittedWorkDone();
      expect(counts(buffers.live), read ? 'reading the weights after every step' : 'training alone').toEqual(before);
    }
    expect(buffers.liveLabelled(/^(WebGPURMSProp|RMSProp)/), 'premise: the optimizer made labelled buffers').toBeGreaterThan(0);
    const weights = await optimizer.getWeights();
    expect(weights.length).toBe(1 + 2 * model.weights.length);
    const tensorsWithState = tf.memory().numTensors;
    optimizer.dispose();
    expect(buffers.liveLabelled(/^(WebGPURMSProp|RMSProp)/), 'dispose() destroys every buffer the optimizer made').toBe(0);
    expect(tf.memory().numTensors, 'dispose() frees the tensors getWeights() returned').toBe(tensorsWithState - weights.length);
    model.dispose();
    tf.dispose([data.x, data.y]);
    expect(tf.memory().numTensors, 'everything made here is freed').toBe(start.tensors);
  } finally {
    buffers.restore();
  }
});
