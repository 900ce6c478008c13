/**
 * The demo's two-spirals MLP on Dawn (SwiftShader without a GPU): its WGSL forward, loss and
 * backward against the f32 CPU twin, the decision-function grid, the SGD baseline bit for bit, and
 * RMSProp training it (one dispatch per step over the ParamArena) far below where SGD gets in as
 * many steps, with no WebGPU error.
 */
import { describe, expect } from 'vitest';
import { RMSProp, ReferenceRMSProp } from '../../src/index.js';
import { CpuSgd, GpuSgd } from '../../demo/problems/sgd.js';
import {
  CpuSpirals,
  GpuSpirals,
  HIDDEN,
  SPIRAL_TENSORS,
  STRIDE,
  initialSpiralParams,
  makeSpiralData,
  type SpiralParams,
} from '../../demo/problems/spirals.js';
import { MULTIPLY_ADD, expectClose, gpuTest, readFloats, rng, useDevice, write } from './harness.js';
import { boundSgdStep } from '../../demo/check/bound.js';

const gpu = useDevice();
const data = makeSpiralData(); // 320 points, 1.75 turns
const init = initialSpiralParams(1);

/**
 * How far a GPU gradient element may be from the CPU twin's, relative to the sum of the magnitudes
 * of the terms it sums, (1/N) Σ_i |δ_i · input_i|. Both sides round every operation to f32 in the
 * same order, except that WGSL's tanh, exp and log are the implementation's: on SwiftShader they
 * differ from V8's by a few ULPs, and the difference goes through two layers of ≈ H = 32 terms
 * each way. Measured on SwiftShader: at most 2.0e-7 at the start and 1.4e-6 after 100 steps;
 * 1e-5 (84 f32 epsilons) bounds it with room for another adapter's tanh, and still catches any
 * wrong index, sign or factor (those err by O(1) relative).
 */
const GRADIENT_TOLERANCE = 1e-5;

/** The magnitudes each gradient element sums, from the twin's per-sample scratch. */
function gradientScale(cpu: CpuSpirals): SpiralParams {
  const { x, samples: n } = data, s = cpu.scratch, H = HIDDEN;
  const scale = Object.fromEntries(SPIRAL_TENSORS.map(({ name, size }) => [name, new Float32Array(size)])) as SpiralParams;
  for (let i = 0; i < n; i++) {
    const r = i * STRIDE, d3 = Math.abs(s[r + 4 * H]!);
    for (let j = 0; j < H; j++) {
      const d1 = Math.abs(s[r + 2 * H + j]!), d2 = Math.abs(s[r + 3 * H + j]!);
      scale.w1[2 * j]! += d1 * Math.abs(x[2 * i]!) / n;
      scale.w1[2 * j + 1]! += d1 * Math.abs(x[2 * i + 1]!) / n;
      scale.b1[j]! += d1 / n;
      for (let k = 0; k < H; k++) scale.w2[j * H + k]! += d2 * Math.abs(s[r + k]!) / n;
      scale.b2[j]! += d2 / n;
      scale.w3[j]! += d3 * Math.abs(s[r + H + j]!) / n;
    }
    scale.b3[0]! += d3 / n;
  }
  return scale;
}

/** Checks the GPU's gradient, loss and accuracy at its current parameters against the twin's at the same parameters. */
async function expectMatchesTwin(problem: GpuSpirals, where: string): Promise<number> {
  const metrics = await problem.metrics();
  const { params, grads } = await problem.read();
  const cpu = new CpuSpirals(data, params);
  const expected = cpu.lossAndGradient();
  const scale = gradientScale(cpu);
  let worst = 0;
  for (const { name, size } of SPIRAL_TENSORS) {
    for (let e = 0; e < size; e++) {
      const g = grads[name][e]!, c = cpu.grads[name][e]!, sc = scale[name][e]!;
      expect(Number.isFinite(g), `${where}: d${name}[${e}] is ${g}`).toBe(true);
      const err = Math.abs(g - c) / sc;
      worst = Math.max(worst, err);
      expect(err, `${where}: d${name}[${e}]: GPU ${g}, CPU ${c}, scale ${sc}`).toBeLessThanOrEqual(GRADIENT_TOLERANCE);
    }
  }
  expect(Math.abs(metrics.loss - expected.loss) / expected.loss, `${where}: loss GPU ${metrics.loss}, CPU ${expected.loss}`).toBeLessThan(1e-5);
  // A point within rounding of z = 0 could fall either side: allow one of them.
  expect(Math.abs(metrics.accuracy - expected.accuracy), `${where}: accuracy`).toBeLessThanOrEqual(1 / data.samples);
  return worst;
}

describe('two-spirals MLP on WebGPU (the demo problem)', () => {
  gpuTest('the WGSL gradient, loss and accuracy are the CPU twin\'s, at the start and after 100 RMSProp steps', gpu, async (device) => {
    const problem = new GpuSpirals(device, data, init, { label: 'test.spirals' });
    const optimizer = new RMSProp(device, problem.params, { lr: 0.01 });
    try {
      const start = await expectMatchesTwin(problem, 'at the start');
      await problem.train(optimizer, 100);
      const trained = await expectMatchesTwin(problem, 'after 100 steps');
      console.log(`worst gradient error / magnitude: ${start.toExponential(2)} at the start, ${trained.toExponential(2)} after 100 steps (tolerance ${GRADIENT_TOLERANCE})`);
    } finally {
      optimizer.destroy();
      problem.destroy();
    }
  });

  gpuTest('the decision function on the grid is the CPU twin\'s', gpu, async (device) => {
    const problem = new GpuSpirals(device, data, init, { grid: 64, label: 'test.spirals.grid' });
    try {
      const z = await problem.evaluateGrid();
      const expected = new CpuSpirals(data, init).evaluateGrid(64);
      expect(z.length).toBe(64 * 64);
      let worst = 0;
      // z sums H products of tanh outputs (each within a few ULPs): relative to Σ|w3·a2| + |b3|, 1e-5.
      const bound = init.w3.reduce((s, w) => s + Math.abs(w), Math.abs(init.b3[0]!));
      z.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - expected[i]!)); });
      expect(worst / bound).toBeLessThan(1e-5);
      // The grid runs from the top-left corner: row 0 is x1 = +EXTENT, column 0 is x0 = -EXTENT.
      expect(z.some((v) => v > 0) && z.some((v) => v < 0), 'the untrained net already splits the plane').toBe(true);
    } finally {
      problem.destroy();
    }
  });

  // Bit for bit where measured (SwiftShader, lavapipe); elsewhere within the WGSL bound of p - lr·g
  // (a hardware compiler may fuse it, or round either way).
  gpuTest('GpuSgd is CpuSgd to the adapter\'s tolerance, over the whole arena in one dispatch', gpu, async (device) => {
    const problem = new GpuSpirals(device, data, init, { label: 'test.spirals.sgd' });
    const sgd = new GpuSgd(device, [{ param: problem.arena.params, grad: problem.arena.grads }], 0.7);
    try {
      const random = rng(3);
      const cpu = new CpuSpirals(data, init);
      const twin = new CpuSgd(cpu.params, 0.7);
      // The WGSL bound of p - lr * g per element (demo/check/bound.ts), for adapters not measured exact.
      const bounds = Object.fromEntries(problem.arena.tensors.map((t) => [t.name, new Float64Array(t.size)])) as Record<keyof SpiralParams, Float64Array>;
      for (let s = 0; s < 3; s++) {
        for (const t of problem.arena.tensors) {
          const g = Float32Array.from({ length: t.size }, () => (random() * 2 - 1) * 10 ** (random() * 4 - 2));
          cpu.grads[t.name as keyof SpiralParams].set(g);
          write(device, problem.arena.grads, t.offset, g);
        }
        for (const t of problem.arena.tensors) {
          const name = t.name as keyof SpiralParams;
          boundSgdStep(cpu.values[name], cpu.grads[name], 0.7, bounds[name]);
        }
        sgd.step();
        twin.step();
      }
      const { params } = await problem.read();
      for (const { name } of SPIRAL_TENSORS) expectClose(params[name], cpu.values[name], `SGD ${name}`, bounds[name]);
      // The arena's padding (zero gradient) stays zero.
      const all = await readFloats(device, problem.arena.params);
      const used = new Set<number>();
      for (const t of problem.arena.tensors) for (let e = 0; e < t.size; e++) used.add(t.offset / 4 + e);
      all.forEach((v, i) => { if (!used.has(i)) expect(v, `padding at ${i}`).toBe(0); });
    } finally {
      sgd.destroy();
      problem.destroy();
    }
  });

  gpuTest('RMSProp trains it far past SGD in 300 steps; GPU and CPU twins train alike', gpu, async (device) => {
    const rmsProblem = new GpuSpirals(device, data, init, { label: 'test.spirals.rmsprop' });
    const sgdProblem = new GpuSpirals(device, data, init, { label: 'test.spirals.sgd' });
    const rmsprop = new RMSProp(device, rmsProblem.params, { lr: 0.01 });
    const sgd = new GpuSgd(device, [{ param: sgdProblem.arena.params, grad: sgdProblem.arena.grads }], 1);
    try {
      const first = await rmsProblem.metrics();
      const t0 = performance.now();
      const rms: number[] = [], plain: number[] = [];
      for (let s = 0; s < 300; s += 100) {
        rms.push((await rmsProblem.train(rmsprop, 100)).loss);
        plain.push((await sgdProblem.train(sgd, 100)).loss);
      }
      const ms = performance.now() - t0;
      const last = await rmsProblem.metrics();
      console.log(`RMSProp ${rms.map((l) => l.toFixed(4)).join(' ')} | SGD ${plain.map((l) => l.toFixed(4)).join(' ')} | accuracy ${last.accuracy} | ${(600 / ms * 1000).toFixed(0)} steps/s`);
      // CPU twin over the same 300 steps (measured: RMSProp 0.125, SGD lr 1 0.62; lr 0.5 and 2 are as bad).
      const cpu = new CpuSpirals(data, init);
      const cpuLoss = cpu.train(new ReferenceRMSProp(cpu.params, { lr: 0.01 }, { multiplyAdd: MULTIPLY_ADD }), 300).loss;
      console.log(`CPU twin after 300 RMSProp steps: ${cpuLoss} (GPU ${last.loss}, relative difference ${(Math.abs(last.loss - cpuLoss) / cpuLoss).toExponential(2)})`);
      expect(first.loss).toBeGreaterThan(0.69);
      expect(last.loss).toBeLessThan(0.2);
      expect(last.accuracy).toBeGreaterThan(0.95);
      expect(plain.at(-1)!).toBeGreaterThan(0.5);
      // The twins start equal and differ only in tanh/exp/log's last bits, which 300 steps of a
      // well-behaved descent do not blow up (measured: 2.1e-5 relative on SwiftShader).
      expect(Math.abs(last.loss - cpuLoss) / cpuLoss).toBeLessThan(1e-3);
    } finally {
      rmsprop.destroy();
      sgd.destroy();
      rmsProblem.destroy();
      sgdProblem.destroy();
    }
  });
});
