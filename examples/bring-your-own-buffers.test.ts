/**
 * Runs examples/bring-your-own-buffers.ts on Dawn (WEBGPU_ADAPTER's adapter): it trains, and each
 * optimizer step inside the app's encoder is the CPU reference's step on the gradients the app's
 * kernels wrote.
 */
import { expect } from 'vitest';
import { RMSProp } from 'webgpu-rmsprop';
import { cpuTwin, expectMatchesTwin, gpuTest, readFloats, useDevice } from '../test/gpu/harness.js';
import { LinearRegression, makeDataset, train } from './bring-your-own-buffers.js';

const gpu = useDevice();

gpuTest('trains the app\'s linear regression to the true weights', gpu, async (device) => {
  const data = makeDataset();
  const lines: string[] = [];
  const { losses, w, b } = await train(device, data, { steps: 300, log: (line) => lines.push(line) });
  const first = losses[0]!.loss, last = losses.at(-1)!.loss;
  // RMSProp's steps stay about lr in size, so the loss ends at the scale of lr^2, not at 0.
  expect(last).toBeLessThan(first * 1e-3);
  for (let j = 0; j < data.features; j++) expect(Math.abs(w[j]! - data.trueW[j]!)).toBeLessThan(0.05);
  expect(Math.abs(b - data.trueB)).toBeLessThan(0.05);
  expect(lines).toHaveLength(losses.length);
});

gpuTest('each step in the app\'s encoder is the reference step on the app\'s gradients', gpu, async (device) => {
  const data = makeDataset(100, 5, 7);
  const model = new LinearRegression(device, data);
  const options = { lr: 0.05, momentum: 0.9, centered: true };
  const optimizer = new RMSProp(device, [{ param: model.w, grad: model.gradW, name: 'w' }, { param: model.b, grad: model.gradB, name: 'b' }], options);
  try {
    for (let step = 0; step < 5; step++) {
      const before = await optimizer.stateDict();
      const [w0, b0] = await optimizer.readParams();
      const encoder = device.createCommandEncoder({ label: 'test.step' });
      model.record(encoder);
      optimizer.step(encoder);
      device.queue.submit([encoder.finish()]);
      const gradW = await readFloats(device, model.gradW), gradB = await readFloats(device, model.gradB);
      expect(gradW.some((g) => g !== 0), 'the app\'s kernels wrote gradients').toBe(true);
      // The same step on the CPU, from the same state and the gradients the app's kernels wrote.
      const twin = cpuTwin([{ param: w0!, grad: gradW, name: 'w' }, { param: b0!, grad: gradB, name: 'b' }], options);
      twin.loadStateDict(before);
      twin.step();
      // Parameters and state at the adapter's tolerance (bit for bit on SwiftShader and lavapipe).
      await expectMatchesTwin(optimizer, twin, `after step ${step + 1}`);
    }
  } finally {
    optimizer.destroy();
    model.destroy();
  }
});
