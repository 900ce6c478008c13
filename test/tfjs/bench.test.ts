/**
 * The --tfjs benchmark's code path (bench/tfjs.ts) on tiny settings: it runs the three optimizers
 * on a real model, with no WebGPU error, and reports finite figures; it checks the path, not the speed.
 */
import { expect } from 'vitest';
import { formatTfjsReport, OPTIMIZERS, runTfjsBench, TFJS_TINY_CONFIG } from '../../bench/tfjs.js';
import { gpuTest } from '../gpu/harness.js';
import { tf, tfl, useTfjs } from './harness.js';

const gpu = useTfjs();

gpuTest('runs tf.train.rmsprop, tfjsRMSProp and the no-op optimizer on a training step, and reports', gpu, async (device) => {
  const tensors = tf.memory().numTensors;
  const report = await runTfjsBench({ name: 'test', adapter: gpu.description, device, tf, tfl, now: () => performance.now(), log: () => {} }, TFJS_TINY_CONFIG);
  expect(report.models.map((m) => m.model)).toEqual(['mlp']);
  const [m] = report.models;
  expect(m!.variables).toBe(6);
  for (const name of OPTIMIZERS) {
    const f = m!.figures[name];
    for (const x of [f.stepMs, f.optimizerMs, f.applyHostMs]) expect(Number.isFinite(x) && x >= 0, `${name}: ${x}`).toBe(true);
  }
  expect(['met', 'missed', 'unresolved']).toContain(m!.verdict);
  expect(formatTfjsReport(report)).toMatch(/Goal: tfjsRMSProp's cost above the floor <= 10% of tf\.train\.rmsprop's/);
  expect(tf.memory().numTensors, 'the bench frees what it made').toBe(tensors);
});
