/**
 * Real tfjs-layers models trained by `model.fit` (issue 12, item 6): an MLP and a small conv net,
 * each beside the same model with `tf.train.rmsprop` from the same weights, compared after every
 * batch (test/tfjs/fit-comparison.ts). Both copies take their weights from a third model by
 * `setWeights` (sharing its data): training must leave that model's weights as they were.
 */
import { describe, expect } from 'vitest';
import { tfjsRMSProp } from '../../src/tfjs/index.js';
import { gpuTest } from '../gpu/harness.js';
import { compareFit, fitDrift, type RuleConfig } from './fit-comparison.js';
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
          expect(b.relative, `batch ${b.batch + 1}: ${b.tensor}`).toBeLessThanOrEqual(fitDrift(b.batch + 1));
          const loss = Math.abs(b.lossOurs - b.lossTheirs) / Math.abs(b.lossTheirs);
          expect(loss, `batch ${b.batch + 1}: loss`).toBeLessThanOrEqual(fitDrift(b.batch + 1));
        }
        expect(r.tensorsAfter, 'tensors').toBe(r.tensorsBefore);
      });
    });
  });
});

// The bound's mutation check (issue 18): a broken variant, eps outside the root (PyTorch's placement, where
// TF.js adds it inside), must exceed fitDrift. If it did not, the bound would be too loose to catch it.
describe('a broken variant: eps outside the root', () => {
  gpuTest('exceeds fitDrift', gpu, async () => {
    const rule = RULES['plain']!;
    const r = await compareFit(tf, tfl, () => tfjsRMSProp(tf, { ...rule, epsMode: 'outside' }), 'mlp', rule, { epochs: 3, batchSize: 8, samples: 24 });
    const over = r.batches.filter((b) => b.relative > fitDrift(b.batch + 1));
    console.log(`eps outside: per batch ${r.batches.map((b) => (b.relative / fitDrift(b.batch + 1)).toFixed(1)).join(' ')} x the bound`);
    expect(over.length, 'batches over the bound').toBeGreaterThan(0);
  });
});
