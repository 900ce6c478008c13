/**
 * The demo's linear-regression problem on Dawn (SwiftShader without a GPU): its WGSL gradient
 * against a float64 CPU gradient, and RMSProp training it to the closed-form optimum, with no
 * WebGPU validation error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RMSProp } from '../../src/index.js';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import {
  GpuLinearRegression,
  lossAndGradient,
  makeRegressionData,
  solveLeastSquares,
  type RegressionData,
} from '../../demo/problems/linear-regression.js';

/**
 * How far an f32 gradient may be from the exact one, per element. Each gradient element sums
 * terms r_i·x_ij, where r_i = x_i·w + b − y_i is itself a sum: f32 rounding errs by at most about
 * (D + 1)·eps relative to the magnitude of r's terms, and the two serial levels of ≈ √N additions
 * each by at most √N·eps relative to the sum of |terms|. So the bound is 1e-5 (168 eps, above
 * D + 1 + 2·64 = 145 eps for 4096 samples and 16 features) times the sum of the magnitudes
 * (2/N) Σ_i (|b| + Σ_k |x_ik w_k| + |y_i|)·|x_ij|, which stays meaningful where r cancels near the optimum.
 */
const GRADIENT_TOLERANCE = 1e-5;

function gradientScale(data: RegressionData, w: Float32Array, b: number): { w: Float64Array; b: number } {
  const { samples: n, features: d, x, y } = data;
  const scaleW = new Float64Array(d);
  let scaleB = 0;
  for (let i = 0; i < n; i++) {
    let magnitude = Math.abs(b) + Math.abs(y[i]!);
    for (let k = 0; k < d; k++) magnitude += Math.abs(x[i * d + k]! * w[k]!);
    scaleB += magnitude;
    for (let j = 0; j < d; j++) scaleW[j]! += magnitude * Math.abs(x[i * d + j]!);
  }
  return { w: scaleW.map((s) => (2 * s) / n), b: (2 * scaleB) / n };
}

describe('linear regression on WebGPU (the npm start problem)', () => {
  let device: GPUDevice;
  let description: string;
  const data = makeRegressionData({ samples: 4096, features: 16, seed: 1 });
  const best = solveLeastSquares(data);

  beforeAll(async () => {
    ({ device, description } = await requestNodeDevice({ defaultLimits: true, label: 'test/gpu/linear-regression' }));
  });

  afterAll(() => {
    device?.destroy();
  });

  /** Reads the GPU's gradient at its current w, b and checks it against the float64 CPU gradient. */
  async function expectGradientMatchesCpu(problem: GpuLinearRegression): Promise<void> {
    const encoder = device.createCommandEncoder({ label: 'test.lossAndGradient' });
    problem.encodeLossAndGradient(encoder);
    device.queue.submit([encoder.finish()]);
    const gpu = await problem.read();
    const cpu = lossAndGradient(data, gpu.w, gpu.b); // at exactly the GPU's f32 parameters
    const scale = gradientScale(data, gpu.w, gpu.b);
    gpu.gradW.forEach((g, j) => {
      expect(Number.isFinite(g), `dL/dw[${j}] is ${g}`).toBe(true);
      expect(Math.abs(g - cpu.gradW[j]!), `dL/dw[${j}]: GPU ${g}, CPU ${cpu.gradW[j]}, scale ${scale.w[j]}`)
        .toBeLessThanOrEqual(GRADIENT_TOLERANCE * scale.w[j]!);
    });
    expect(Number.isFinite(gpu.gradB), `dL/db is ${gpu.gradB}`).toBe(true);
    expect(Math.abs(gpu.gradB - cpu.gradB), `dL/db: GPU ${gpu.gradB}, CPU ${cpu.gradB}`).toBeLessThanOrEqual(GRADIENT_TOLERANCE * scale.b);
  }

  it(`has a WebGPU adapter`, () => {
    expect(description).toBeTruthy();
  });

  it('computes the gradient of the CPU twin, at the start and near the optimum', async () => {
    device.pushErrorScope('validation');
    const problem = new GpuLinearRegression(device, data);
    const optimizer = new RMSProp(device, problem.params, { lr: 0.02 });
    try {
      await expectGradientMatchesCpu(problem); // w = 0, b = 0: large residuals, no cancellation
      await problem.train(optimizer, 200);
      await expectGradientMatchesCpu(problem); // residuals ≈ the noise: r cancels
    } finally {
      optimizer.destroy();
      problem.destroy();
    }
    expect(await device.popErrorScope()).toBeNull();
  });

  it('trains to within 1e-4 (relative) of the least-squares loss in 500 steps', async () => {
    device.pushErrorScope('validation');
    const problem = new GpuLinearRegression(device, data);
    const optimizer = new RMSProp(device, problem.params, { lr: 0.02 });
    const steps = 500, chunk = 10;
    const losses: number[] = [];
    try {
      for (let step = 0; step < steps; step += chunk) {
        // The demo's schedule: a cosine from 0.02 to 0, stepped every 10 steps.
        optimizer.lr = 0.01 * (1 + Math.cos((Math.PI * (step + chunk / 2)) / steps));
        losses.push(await problem.train(optimizer, chunk));
      }
      const { w, b } = await problem.read();
      const exact = lossAndGradient(data, w, b).loss; // float64, at the trained f32 parameters
      expect(losses.every(Number.isFinite), `losses: ${losses.join(', ')}`).toBe(true);
      expect(losses[0]!).toBeGreaterThan(losses.at(-1)!);
      expect(exact).toBeGreaterThanOrEqual(best.loss * (1 - 1e-12)); // nothing beats least squares
      expect((exact - best.loss) / best.loss).toBeLessThan(1e-4);
      // The GPU's own f32 loss agrees with float64 to f32 rounding of the reduction.
      expect(Math.abs(losses.at(-1)! - exact) / exact).toBeLessThan(1e-5);
      expect(optimizer.stepCount).toBe(steps);
    } finally {
      optimizer.destroy();
      problem.destroy();
    }
    expect(await device.popErrorScope()).toBeNull();
  });
});
