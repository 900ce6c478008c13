/**
 * The benchmark's code path (bench/core.ts and bench/table.ts) on tiny shapes, so that `npm run
 * bench` cannot rot: every workload, variant and layout, TF.js on the same Dawn device, the CPU
 * reference, the copy, GPU timestamps where the adapter has them, and the table. It checks that the
 * benchmarked optimizers compute the right thing (bit for bit against the CPU reference after the
 * same steps), not how fast they are.
 */
import * as tf from '@tensorflow/tfjs-core';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectMultiplyAdd, type MultiplyAdd } from '../../src/index.js';
import { nodeGpuInstance, requestNodeAdapter } from '../../demo/node/dawn.js';
import { TINY_CONFIG, runBench, type BenchReport, type Stat } from '../../bench/core.js';
import { TFJS_TARGET, formatReport, rows } from '../../bench/table.js';
import { VARIANTS, bytesPerParam, paramCount, singleTensor, transformer } from '../../bench/workloads.js';
import { median } from '../../bench/timing.js';
import { STEP_COST_TINY, formatStepCost, runStepCost } from '../../bench/step-cost.js';

describe('workloads', () => {
  it('the transformer set is the issue\'s: 42 tensors, 4,198,656 parameters', () => {
    const set = transformer();
    expect(set.tensors.length).toBe(42);
    expect(paramCount(set)).toBe(4_198_656);
    expect(set.tensors.filter((t) => t.size === 256 * 256).length).toBe(16);
    expect(new Set(set.tensors.map((t) => t.name)).size).toBe(42);
    expect(paramCount(singleTensor())).toBe(16 * 1024 * 1024);
  });

  it('bytes per parameter: 20 plain, +8 centered, +8 momentum; 14.03 with 8-bit state', () => {
    expect(bytesPerParam({})).toBe(20);
    expect(bytesPerParam({ centered: true })).toBe(28);
    expect(bytesPerParam({ momentum: 0.9 })).toBe(28);
    expect(bytesPerParam({ stateDtype: 'int8-blockwise' })).toBe(12 + 2 * (1 + 4 / 256));
    expect(VARIANTS.map((v) => bytesPerParam(v.options))).toEqual([20, 36, 12 + 2 * (1 + 4 / 256)]);
  });

  it('both sides get the same hyperparameters', () => {
    for (const v of VARIANTS) {
      expect(v.tfjs).toEqual({ learningRate: v.options.lr, decay: v.options.alpha, momentum: v.options.momentum, epsilon: v.options.eps, centered: v.options.centered });
      expect(v.options).toMatchObject({ epsMode: 'inside', lrInMomentum: true }); // TF.js's rule
    }
  });

  it('median', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
  });
});

describe('the benchmark on tiny shapes (Dawn, TF.js on the same device)', () => {
  let device: GPUDevice;
  let report: BenchReport;
  let description = '';
  let multiplyAdd: MultiplyAdd = 'fused';
  const uncaptured: string[] = [];

  beforeAll(async () => {
    const found = await requestNodeAdapter();
    if (!found) throw new Error('no WebGPU adapter (see demo/node/dawn.ts)');
    description = found.description;
    const timestamps = found.adapter.features.has('timestamp-query');
    device = await found.adapter.requestDevice({ label: 'bench smoke test', requiredFeatures: timestamps ? ['timestamp-query'] : [] });
    device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
    multiplyAdd = await detectMultiplyAdd(device);
    const g = globalThis as { navigator?: { gpu?: GPU } };
    g.navigator ??= {};
    g.navigator.gpu ??= nodeGpuInstance();
    tf.env().set('IS_TEST', true);
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', () => new WebGPUBackend(device));
    expect(await tf.setBackend('webgpu')).toBe(true);
  });

  afterAll(() => {
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    device?.destroy();
  });

  it('measures every workload, variant and layout, and the optimizers equal the CPU reference', async () => {
    const lines: string[] = [];
    const tensorsBefore = tf.memory().numTensors;
    report = await runBench({
      name: 'smoke', device, adapter: description, isSoftware: /swiftshader/i.test(description),
      tfjs: { tf, WebGPUBackend }, now: () => performance.now(), log: (l) => lines.push(l),
    }, TINY_CONFIG, { multiplyAdd });
    await device.queue.onSubmittedWorkDone();
    expect(uncaptured).toEqual([]);
    expect(tf.memory().numTensors).toBe(tensorsBefore); // the TF.js runners dispose what they made
    expect(lines).toHaveLength(6);
    expect(report.timing).toBe(device.features.has('timestamp-query') ? 'timestamp-query' : 'wall clock');
    const n = transformer(TINY_CONFIG.transformer).tensors.length; // 12: one layer
    expect(report.groups.map((g) => [g.tensors, g.variant])).toEqual([
      [1, 'plain'], [1, 'momentum 0.9 + centered'], [1, 'plain, 8-bit state'],
      [n, 'plain'], [n, 'momentum 0.9 + centered'], [n, 'plain, 8-bit state'],
    ]);
    const stats: Stat[] = report.groups.flatMap((g) => [g.copy, g.reference, g.tfjs!, ...Object.values(g.ours)]);
    expect(stats).toHaveLength(6 * 3 + 3 + 6);
    for (const s of stats) {
      expect(s.msPerStep).toBeGreaterThan(0);
      expect(s.minMsPerStep).toBeLessThanOrEqual(s.msPerStep);
      expect(s.maxMsPerStep).toBeGreaterThanOrEqual(s.msPerStep);
      expect(s.stepsPerBatch).toBeGreaterThanOrEqual(1);
    }
    for (const g of report.groups) {
      const perParam = { 'plain': 20, 'momentum 0.9 + centered': 36, 'plain, 8-bit state': 12 + 2 * (1 + 4 / 256) }[g.variant];
      expect(g.bytesPerStep).toBe(g.params * perParam!);
      expect(g.verified).toEqual(g.tensors > 1 ? { separate: true, arena: true } : { separate: true });
    }
  });

  it('prints one row per set, variant and layout, with the target verdict on the transformer rows', () => {
    expect(report, 'no report: the run in the test above failed').toBeDefined();
    const table = rows(report);
    expect(table).toHaveLength(9);
    for (const r of table) {
      expect(r.gbPerS).toBeCloseTo(r.bytesPerStep / (r.ms * 1e6), 9);
      expect(r.vsTfjs).toBeCloseTo(r.tfjsMs! / r.ms, 9);
      expect(r.verified).toBe(true);
    }
    const text = formatReport(report);
    expect(text).toContain(`Target: >= ${TFJS_TARGET}x faster than TF.js`);
    expect(text.match(/-> (met|MISSED)/g)).toHaveLength(6);
    expect(text.split('\n').filter((l) => l.startsWith('transformer'))).toHaveLength(6);
  });

  it('the step-cost benchmark: roofline rows, ratios, host times with dispatch counts (arena 1, or 3 with the pre-pass)', async () => {
    const lines: string[] = [];
    const tensorsBefore = tf.memory().numTensors;
    const cost = await runStepCost({
      name: 'smoke', device, adapter: description, isSoftware: /swiftshader/i.test(description),
      tfjs: { tf, WebGPUBackend }, now: () => performance.now(), log: (l) => lines.push(l),
    }, STEP_COST_TINY);
    await device.queue.onSubmittedWorkDone();
    expect(uncaptured).toEqual([]);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(cost.roofline.map((r) => r.bytesPerParam)).toEqual([20, 20, 20, 36, 36, 24, 24]);
    for (const r of cost.roofline) expect(r.ms).toBeGreaterThan(0);
    expect(cost.plainOfSameBytes).toBeCloseTo(cost.roofline[1]!.ms / cost.roofline[2]!.ms, 9);
    expect(cost.clipOverPlain).toBeCloseTo(cost.roofline[6]!.ms / cost.roofline[2]!.ms, 9);
    // Two sets x two layouts x two option sets; the arena's dispatches: 2 plain (update, countStep), 4 with the pre-pass.
    expect(cost.host).toHaveLength(8);
    expect(cost.host.filter((h) => h.layout === 'arena').map((h) => h.dispatches)).toEqual([2, 4, 2, 4]);
    expect(cost.host.every((h) => h.passes === 1 && h.recordUs > 0 && h.submitUs > 0)).toBe(true);
    expect(cost.host.filter((h) => h.tfjsUs !== undefined)).toHaveLength(2);
    const text = formatStepCost(cost);
    expect(text).toMatch(/of the same-bytes kernel's speed \(goal >= 80%: (met|MISSED)\)/);
    expect(text).toMatch(/the plain arena step \(goal <= 1.3x: (met|MISSED)\)/);
  });
});
