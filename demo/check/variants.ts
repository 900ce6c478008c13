/**
 * The variants every GPU check runs: each override-constant combination of shaders/rmsprop.wgsl's
 * base rule, TF1's preset, and the extensions (Nesterov, decoupled weight decay, bias correction,
 * clipping, loss scaling). Shared by the GPU tests (test/gpu/variants.test.ts), the bound's
 * simulation (test/gpu/tolerance.test.ts), `npm run verify` and the demo's "Check this GPU" page.
 */
import { presets, type RMSPropOptions } from '../../src/index.js';

/** A named option set. */
export interface Variant {
  readonly name: string;
  readonly options: Partial<RMSPropOptions>;
  /** Multiply the random gradients by this (1 unless the variant needs smaller ones; see EXTENSIONS). */
  readonly gradScale?: number;
  /** Tensor sizes, where not VARIANT_SIZES (8-bit state needs 4096 elements or more). */
  readonly sizes?: readonly number[];
  /** A step (1-based) whose gradients get one NaN: with skipNonFinite, skipped on both sides. */
  readonly nonFiniteStep?: number;
}

/**
 * Every variant of the base rule: each combination of centered, momentum (0 / 0.9), lrInMomentum,
 * epsMode, maximize and weightDecay (0 / 0.01) over PyTorch's defaults, then TF1's preset
 * (initialScale 1) with and without momentum and centering.
 */
export const VARIANTS: readonly Variant[] = (() => {
  const out: Variant[] = [];
  for (const centered of [false, true]) {
    for (const momentum of [0, 0.9]) {
      for (const lrInMomentum of [false, true]) {
        for (const epsMode of ['outside', 'inside'] as const) {
          for (const maximize of [false, true]) {
            for (const weightDecay of [0, 0.01]) {
              const flags = Object.entries({ centered, lrInMomentum, maximize }).filter(([, on]) => on).map(([k]) => k);
              const name = [`momentum ${momentum}`, `eps ${epsMode}`, `weightDecay ${weightDecay}`, ...flags].join(', ');
              out.push({ name, options: { centered, momentum, lrInMomentum, epsMode, maximize, weightDecay } });
            }
          }
        }
      }
    }
  }
  for (const momentum of [0, 0.9]) {
    for (const centered of [false, true]) {
      const name = `presets.tf1 (initialScale 1), momentum ${momentum}${centered ? ', centered' : ''}`;
      out.push({ name, options: { ...presets.tf1, momentum, centered } });
    }
  }
  return out;
})();

/**
 * The extensions. Centered with bias correction estimates the variance as v̂ - m̂², a difference of
 * nearly equal numbers at the first steps (exactly 0 at step 1 from a zero state): the result is
 * rounding noise over eps, on any hardware and in Optax alike, unless the initial scale dominates
 * g². So those variants start v at 1 and take gradients up to 1 (`gradScale` 1e-3).
 */
export const EXTENSIONS: readonly Variant[] = (() => {
  const out: Variant[] = [];
  for (const lrInMomentum of [false, true]) {
    for (const centered of [false, true]) {
      out.push({
        name: `nesterov, lrInMomentum ${lrInMomentum}, centered ${centered}`,
        options: { momentum: 0.9, nesterov: true, lrInMomentum, centered },
      });
      out.push({
        name: `biasCorrection, momentum, lrInMomentum ${lrInMomentum}, centered ${centered}`,
        options: {
          biasCorrection: true, alpha: 0.9, momentum: 0.9, lrInMomentum, centered, initialScale: centered ? 1 : 0,
        },
        ...(centered ? { gradScale: 1e-3 } : {}),
      });
    }
  }
  out.push({ name: 'decoupled weight decay 0.01', options: { weightDecay: 0.01, weightDecayMode: 'decoupled' } });
  out.push({
    name: 'decoupled weight decay 0.1, momentum, maximize',
    options: { weightDecay: 0.1, weightDecayMode: 'decoupled', momentum: 0.9, maximize: true },
  });
  out.push({ name: 'clipGradNorm 1, centered, momentum', options: { clipGradNorm: 1, centered: true, momentum: 0.9 } });
  out.push({
    name: 'clipGradNorm 1, L2 weightDecay, eps inside',
    options: { clipGradNorm: 1, weightDecay: 0.01, epsMode: 'inside' },
  });
  out.push({
    name: 'lossScale 1024, clipGradNorm 0.5, momentum',
    options: { lossScale: 1024, clipGradNorm: 0.5, momentum: 0.9 },
  });
  return out;
})();

/** Sizes of the variant checks: a body with a tail (4 * 257 + 3), a lone tail (3), an exact vec4 multiple (64). */
export const VARIANT_SIZES: readonly number[] = [1031, 3, 64];
/** Steps of the variant checks. */
export const VARIANT_STEPS = 10;

