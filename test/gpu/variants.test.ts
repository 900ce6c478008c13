/**
 * Every variant of the rule (every override-constant combination of shaders/rmsprop.wgsl, and the
 * TF1 preset's initialScale 1) against the CPU reference: the parameters after each step, the
 * whole state at the end.
 */
import { describe, expect } from 'vitest';
import { gpuTest, useDevice } from './harness.js';
import { Twin, VARIANT_SIZES, VARIANT_STEPS, VARIANTS } from './twin.js';

const gpu = useDevice();

describe('every variant matches the CPU reference, step by step', () => {
  VARIANTS.forEach(({ name, options }, v) => {
    gpuTest(name, gpu, async (device) => {
      const twin = Twin.ofSizes(device, VARIANT_SIZES, options, 100 + v);
      if ((options.initialScale ?? 0) !== 0) {
        // The mean square starts at initialScale on the GPU, before any step.
        const before = await twin.gpu.stateDict();
        for (const t of before.tensors) expect(Array.from(new Set(t.squareAvg))).toEqual([options.initialScale]);
      }
      await twin.run(VARIANT_STEPS);
      const state = await twin.expectState();
      expect(state.step).toBe(VARIANT_STEPS);
      expect(twin.gpu.stepCount).toBe(VARIANT_STEPS);
      twin.destroy();
    });
  });
});
