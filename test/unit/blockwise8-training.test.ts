/**
 * 8-bit state trains as f32 state does, on the CPU twin (src/rule/blockwise8.ts, which the GPU matches
 * bit for bit on SwiftShader and lavapipe: test/gpu/blockwise8.test.ts): the demo's two-spirals MLP and
 * linear regression, and a 10,000-step run. Their tensors are under 4096 elements, so an optimizer with
 * stateDtype 'int8-blockwise' would keep them in f32 (bitsandbytes' min_8bit_size); here every tensor
 * is stepped with 8-bit state regardless (blockwise8Step), the harder case: fewer elements per block.
 */
import { describe, expect, it } from 'vitest';
import { blockwise8Step, createBlockwise8State, ReferenceRMSProp, type Blockwise8State, type RMSPropConfig } from '../../src/index.js';
import { CpuSpirals, initialSpiralParams, makeSpiralData } from '../../demo/problems/spirals.js';
import { CpuLinearRegression, makeRegressionData, solveLeastSquares } from '../../demo/problems/linear-regression.js';

/** RMSProp with 8-bit state on every tensor, whatever its size. */
class EightBitEverywhere {
  readonly #params: { param: Float32Array; grad: Float32Array; state: Blockwise8State }[];
  #step = 0;
  lr: number;

  constructor(params: readonly { param: Float32Array; grad: Float32Array }[], readonly options: RMSPropConfig & { lr: number }) {
    this.lr = options.lr;
    this.#params = params.map((p) => ({ ...p, state: createBlockwise8State(p.param.length, options as never) }));
  }

  step(): void {
    this.#step++;
    for (const p of this.#params) {
      blockwise8Step(p.param, p.grad, p.state, { ...this.options, lr: this.lr }, 'fused', { step: this.#step });
    }
  }
}

describe('training with 8-bit state (CPU twin)', () => {
  it('the two-spirals MLP: 300 steps reach the f32 run\'s loss within 10% and its accuracy within 1%', () => {
    const data = makeSpiralData();
    const f32 = new CpuSpirals(data, initialSpiralParams(1));
    const q8 = new CpuSpirals(data, initialSpiralParams(1));
    const a = f32.train(new ReferenceRMSProp(f32.params, { lr: 0.01 }), 300);
    const b = q8.train(new EightBitEverywhere(q8.params, { lr: 0.01 }), 300);
    console.info(`spirals, 300 steps: f32 loss ${a.loss.toFixed(4)} accuracy ${a.accuracy}; ` +
      `8-bit loss ${b.loss.toFixed(4)} accuracy ${b.accuracy}`);
    expect(b.loss).toBeLessThan(0.2);
    expect(Math.abs(b.loss - a.loss) / a.loss).toBeLessThan(0.1);
    expect(Math.abs(b.accuracy - a.accuracy)).toBeLessThanOrEqual(0.01);
  }, 60_000);

  it('linear regression: 500 steps (the demo\'s cosine schedule) end within 1e-4 of the least-squares loss, as f32', () => {
    const data = makeRegressionData();
    const best = solveLeastSquares(data).loss;
    const run = (make: (p: CpuLinearRegression) => { step(): void; lr: number }) => {
      const problem = new CpuLinearRegression(data);
      const opt = make(problem);
      const steps = 500, chunk = 10;
      for (let step = 0; step < steps; step += chunk) {
        opt.lr = 0.01 * (1 + Math.cos((Math.PI * (step + chunk / 2)) / steps));
        problem.train(opt, chunk);
      }
      return problem.lossAndGradient();
    };
    const a = run((p) => new ReferenceRMSProp(p.params, { lr: 0.02 }));
    const b = run((p) => new EightBitEverywhere(p.params, { lr: 0.02 }));
    console.info(`linear regression, 500 steps: least squares ${best}, f32 ${a}, 8-bit ${b}`);
    expect((a - best) / best).toBeLessThan(1e-4);
    expect((b - best) / best).toBeLessThan(1e-4);
  }, 60_000);

  it('10,000 steps of linear regression at a fixed lr stay as close to least squares as f32', () => {
    const data = makeRegressionData({ seed: 3 });
    const best = solveLeastSquares(data).loss;
    const f32 = new CpuLinearRegression(data), q8 = new CpuLinearRegression(data);
    const fo = new ReferenceRMSProp(f32.params, { lr: 1e-3 }), qo = new EightBitEverywhere(q8.params, { lr: 1e-3 });
    const gaps: string[] = [];
    let a = 0, b = 0;
    for (let k = 1; k <= 10; k++) {
      a = f32.train(fo, 1000);
      b = q8.train(qo, 1000);
      gaps.push(`${k}k: ${((a - best) / best).toExponential(1)} / ${((b - best) / best).toExponential(1)}`);
      expect(Number.isFinite(b)).toBe(true);
    }
    console.info(`linear regression at lr 1e-3, excess loss over least squares, f32 / 8-bit: ${gaps.join(', ')}`);
    expect((a - best) / best).toBeLessThan(1e-3);
    expect((b - best) / best).toBeLessThan(1e-3);
    expect(b - best, '8-bit no further from least squares than twice f32').toBeLessThan(2 * (a - best) + 1e-4 * best);
  }, 120_000);
});
