/**
 * Real tfjs-layers models trained by `model.fit` (issue 12, item 6): an MLP and a small conv net,
 * each beside the same model with `tf.train.rmsprop` from the same weights, compared after every
 * batch (test/tfjs/fit-comparison.ts). Both copies take their weights from a third model by
 * `setWeights` (sharing its data): training must leave that model's weights as they were.
 */
import { describe, expect } from 'vitest';
import { tfjsRMSProp } from '../../src/tfjs/index.js';
import { gpuTest } from '../gpu/harness.js';
import { compareFit, FIT_DRIFT, type RuleConfig } from './fit-comparison.js';
import { tf, tfl, useTfjs } from './harness.js';

const gpu = useTfjs();


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
