/**
 * The optimizer against `tf.train.rmsprop` on the same WebGPU backend and device, given the very
 * same gradient tensors for 20 steps, and against its CPU twin given them too: bit for bit on
 * SwiftShader (the twin rounds as the adapter does), and within TFJS_ULPS of TF.js (the two round
 * the mean square's new term in different orders; test/unit/tfjs.test.ts shows that is the only
 * difference). With the gradient pre-pass (clipGradNorm) and without.
 */
import { describe, expect } from 'vitest';
import type { TfjsRMSPropConfig } from '../../src/tfjs/index.js';
import { expectUlps, gpuTest, rng } from '../gpu/harness.js';
import { gradients, readThroughOp, useTfjs } from './harness.js';
import { Trio } from './trio.js';

const gpu = useTfjs();

describe.each<{ name: string; config: TfjsRMSPropConfig; size: number; seed: number }>([
  { name: 'plain, 37 elements', config: { learningRate: 0.01 }, size: 37, seed: 1 },
  { name: 'plain, 1000 elements', config: { learningRate: 0.01 }, size: 1000, seed: 2 },
  { name: 'momentum 0.9', config: { learningRate: 0.01, momentum: 0.9 }, size: 1000, seed: 3 },
  // A norm this large never clips: the scale is exactly 1, and the step is TF.js's.
  { name: 'with the pre-pass (clipGradNorm 1e30), momentum 0.9', config: { learningRate: 0.01, momentum: 0.9, clipGradNorm: 1e30 }, size: 1000, seed: 4 },
  { name: 'decay 0.5, epsilon 1e-4, momentum 0.3', config: { learningRate: 0.003, decay: 0.5, epsilon: 1e-4, momentum: 0.3 }, size: 257, seed: 5 },
])('$name', ({ config, size, seed }) => {
  gpuTest('steps as its CPU twin (to the adapter\'s tolerance) and as tf.train.rmsprop (TFJS_ULPS), 20 steps', gpu, async () => {
    const random = rng(seed);
    const trio = new Trio(Float32Array.from({ length: size }, () => (random() - 0.5) * 20), config);
    try {
      for (let s = 0; s < 20; s++) {
        trio.step(gradients(random, size));
        await trio.check(`step ${s + 1}`);
      }
    } finally {
      trio.dispose();
    }
  });
});

gpuTest('with the gradient pre-pass (clipGradNorm 1e30: it never clips) and without, the same bits', gpu, async () => {
  const random = rng(6);
  const initial = Float32Array.from({ length: 300 }, () => random() - 0.5);
  const a = new Trio(initial, { momentum: 0.9 }), b = new Trio(initial, { momentum: 0.9, clipGradNorm: 1e30 });
  try {
    for (let s = 0; s < 5; s++) {
      const g = gradients(random, 300);
      a.step(g);
      b.step(g);
    }
    const [x, y] = [await a.check('without the pre-pass'), await b.check('with the pre-pass')];
    expect(Array.from(new Uint32Array(x.buffer))).toEqual(Array.from(new Uint32Array(y.buffer)));
  } finally {
    a.dispose();
    b.dispose();
  }
});

describe('centered: TF.js 4.22 takes sqrt(v - (m^2 + eps)), this library sqrt(max(v - m^2, 0) + eps)', () => {
  gpuTest('where eps is below half an ULP of m^2 and of v - m^2 the two formulas round alike: within TFJS_ULPS', gpu, async () => {
    // Gradients of magnitude 0.1..10 with random signs keep v - m^2 >= ~1e-4 (ULP ~1e-11): eps 1e-13 vanishes in both.
    const random = rng(7);
    const trio = new Trio(Float32Array.from({ length: 64 }, () => random() - 0.5), { learningRate: 0.01, centered: true, momentum: 0.9, epsilon: 1e-13 });
    try {
      for (let s = 0; s < 20; s++) {
        trio.step(gradients(random, 64, -1, 1).map((x) => x || 1)); // no zeros: v - m^2 > 0
        await trio.check(`step ${s + 1}`);
      }
    } finally {
      trio.dispose();
    }
  });

  gpuTest('where v - m^2 < eps TF.js gives NaN; this optimizer stays finite, and is its CPU twin', gpu, async () => {
    // Tiny gradients (1e-6..1e-5): the variance v - m^2 (~1e-11) is far below TF.js's default eps, 1e-7.
    const random = rng(8);
    const trio = new Trio(Float32Array.from({ length: 16 }, () => random() - 0.5), { learningRate: 0.01, centered: true });
    try {
      trio.step(gradients(random, 16, -6, -5));
      const [ours, theirs] = [await readThroughOp(trio.ours), await readThroughOp(trio.theirs)];
      expect(theirs.every(Number.isNaN), 'tf.train.rmsprop: NaN everywhere').toBe(true);
      expect(ours.every(Number.isFinite), 'this optimizer: finite').toBe(true);
      expectUlps(ours, trio.twinParam, 'against the CPU twin');
    } finally {
      trio.dispose();
    }
  });
});
