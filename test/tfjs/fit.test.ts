/**
 * Real tfjs-layers models trained by `model.fit` (issue 12, item 6): an MLP and a small conv net,
 * each beside the same model with `tf.train.rmsprop` from the same weights, compared after every
 * batch (test/tfjs/fit-comparison.ts). Both copies take their weights from a third model by
 * `setWeights` (sharing its data): training must leave that model's weights as they were.
 */
import { describe, expect } from 'vitest';
import { tfjsRMSProp } from '../../src/tfjs/index.js';
import { gpuTest } from '../gpu/harness.js';
import { compareFit, type RuleConfig } from './fit-comparison.js';
import { tf, tfl, useTfjs } from './harness.js';

const gpu = useTfjs();

/**
 * How far the two may drift apart over the 9 batches (3 epochs), relative to each tensor's largest
 * weight (and for the loss, relative to TF.js's): the rule's rounding differs by up to TFJS_ULPS a
 * step, and each batch's gradients see the previous difference through the model. Measured, worst
 * of the cases below: weights 6.1e-7 (SwiftShader; lavapipe 3.5e-7), losses 5.3e-7 (lavapipe;
 * SwiftShader 4.7e-7). The bound is about 3 times that, for adapters that round otherwise.
 */
const FIT_DRIFT = 2e-6;

const RULES: Record<string, RuleConfig> = {
  plain: { learningRate: 0.01, decay: 0.9, momentum: 0, epsilon: 1e-7, centered: false },
  momentum: { learningRate: 0.003, decay: 0.9, momentum: 0.9, epsilon: 1e-7, centered: false },
};

describe.each(['mlp', 'conv'] as const)('%s', (kind) => {
  describe.each(Object.keys(RULES))('%s', (rule) => {
    const reads = kind === 'mlp' ? (['op', 'data'] as const) : (['op'] as const);
    describe.each(reads)('weights read with %s', (read) => {
      gpuTest('model.fit agrees with tf.train.rmsprop after every batch; the source model is untouched; no tensor leaks', gpu, async () => {
        const r = await compareFit(tf, tfl, () => tfjsRMSProp(tf, RULES[rule]), kind, RULES[rule]!, { epochs: 3, batchSize: 8, samples: 24, read });
        console.log(`${kind}, ${rule}, read ${read}: weights ${r.worstRelative.toExponential(2)}, loss ${r.worstLoss.toExponential(2)}, ` +
          `loss ${r.firstLoss.toFixed(4)} -> ${r.lastLoss.toFixed(4)}; per batch ${r.batches.map((b) => b.relative.toExponential(1)).join(' ')}`);
        expect(r.batches.length).toBe(9);
        expect(r.sourceUnchanged, 'the model both copied their weights from').toBe(true);
        expect(r.lastLoss, 'it trains').toBeLessThan(r.firstLoss);
        for (const b of r.batches) {
          expect(b.relative, `batch ${b.batch + 1}: ${b.tensor}`).toBeLessThanOrEqual(FIT_DRIFT);
          expect(Math.abs(b.lossOurs - b.lossTheirs) / Math.abs(b.lossTheirs), `batch ${b.batch + 1}: loss`).toBeLessThanOrEqual(FIT_DRIFT);
        }
        expect(r.tensorsAfter, 'tensors').toBe(r.tensorsBefore);
      });
    });
  });
});
