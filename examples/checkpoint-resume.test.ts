/**
 * Runs examples/checkpoint-resume.ts on Dawn: 12 steps, a checkpoint file, a fresh model and
 * optimizer resumed from it, 18 more steps; against 30 steps without a pause: bit for bit.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { expectBitExact, gpuTest, useDevice } from '../test/gpu/harness.js';
import { makeDataset, LinearRegression } from './bring-your-own-buffers.js';
import { createOptimizer, resumeFromCheckpoint, saveCheckpoint, trainSteps } from './checkpoint-resume.js';

const gpu = useDevice();
const dir = mkdtempSync(join(tmpdir(), 'webgpu-rmsprop-checkpoint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

gpuTest('a run resumed from a checkpoint file ends bit for bit where an unbroken run ends', gpu, async (device) => {
  const data = makeDataset(128, 6, 5);

  const unbroken = new LinearRegression(device, data);
  const unbrokenOptimizer = createOptimizer(device, unbroken);
  trainSteps(device, unbroken, unbrokenOptimizer, 30);
  const expectedWeights = await unbrokenOptimizer.readParams();
  const expectedState = await unbrokenOptimizer.stateDict();

  const first = new LinearRegression(device, data);
  const firstOptimizer = createOptimizer(device, first);
  trainSteps(device, first, firstOptimizer, 12);
  const path = join(dir, 'run.safetensors');
  await saveCheckpoint(path, firstOptimizer);
  firstOptimizer.destroy();
  first.destroy(); // nothing of the first run survives but the file

  // A safetensors file: 8-byte header length, then JSON naming each tensor (PyTorch's state names).
  const bytes = readFileSync(path);
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')) as Record<string, unknown>;
  expect(Object.keys(header).sort()).toEqual(['__metadata__', 'b', 'b.momentum_buffer', 'b.square_avg', 'w', 'w.momentum_buffer', 'w.square_avg']);

  const { model, optimizer } = await resumeFromCheckpoint(device, data, path);
  expect(optimizer.stepCount).toBe(12);
  trainSteps(device, model, optimizer, 18);
  const weights = await optimizer.readParams();
  const state = await optimizer.stateDict();
  expect(state.step).toBe(30);
  weights.forEach((w, i) => expectBitExact(w, expectedWeights[i]!, `weights[${i}]`));
  state.tensors.forEach((t, i) => {
    expectBitExact(t.squareAvg, expectedState.tensors[i]!.squareAvg, `squareAvg[${i}]`);
    expectBitExact(t.momentumBuffer!, expectedState.tensors[i]!.momentumBuffer!, `momentumBuffer[${i}]`);
  });
  for (const o of [optimizer, unbrokenOptimizer]) o.destroy();
  for (const m of [model, unbroken]) m.destroy();
});
