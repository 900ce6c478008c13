/**
 * HARDWARE_TOLERANCE_ULPS (the GPU-vs-twin tolerance on hardware adapters, derived in
 * tolerance.test.ts for the base variants) also covers the extensions: Nesterov, decoupled weight
 * decay, bias correction (one more division) and clipping (one more multiply, by a factor the GPU's
 * own division and sqrt compute). Same method: the CPU rule rounding as loosely as WGSL allows
 * (loose-reference.ts) against the reference, over the variant tests' sizes and steps.
 */
import { describe, expect, test } from 'vitest';
import { createReferenceState, gradNormStats, resolveOptions, type RMSPropOptions } from '../../src/index.js';
import { stepHyper, stepResolved } from '../../src/reference.js';
import { compareUlps, HARDWARE_TOLERANCE_ULPS, randomGrads, randomParams, rng } from './harness.js';
import { looseStep } from './loose-reference.js';
import { VARIANT_SIZES, VARIANT_STEPS } from './twin.js';

const EXTENSIONS: [string, Partial<RMSPropOptions>][] = [];
for (const lrInMomentum of [false, true]) {
  for (const centered of [false, true]) {
    EXTENSIONS.push([`nesterov, lrInMomentum ${lrInMomentum}, centered ${centered}`, { momentum: 0.9, nesterov: true, lrInMomentum, centered }]);
    EXTENSIONS.push([`biasCorrection, momentum, lrInMomentum ${lrInMomentum}, centered ${centered}`, { biasCorrection: true, alpha: 0.9, momentum: 0.9, lrInMomentum, centered, initialScale: centered ? 1 : 0 }]);
  }
}
EXTENSIONS.push(['decoupled weight decay 0.01', { weightDecay: 0.01, weightDecayMode: 'decoupled' }]);
EXTENSIONS.push(['decoupled weight decay 0.1, momentum, maximize', { weightDecay: 0.1, weightDecayMode: 'decoupled', momentum: 0.9, maximize: true }]);
EXTENSIONS.push(['clipGradNorm 1, centered, momentum', { clipGradNorm: 1, centered: true, momentum: 0.9 }]);
EXTENSIONS.push(['clipGradNorm 1, L2 weightDecay, eps inside', { clipGradNorm: 1, weightDecay: 0.01, epsMode: 'inside' }]);

describe('tolerances of the extensions', () => {
  test(`rounding as loosely as WGSL allows stays within HARDWARE_TOLERANCE_ULPS (${HARDWARE_TOLERANCE_ULPS})`, () => {
    let worst = 0, where = '';
    for (const [name, options] of EXTENSIONS) {
      const o = resolveOptions(options);
      // Centered with bias correction estimates the variance as v̂ - m̂², which at the first steps
      // is a difference of nearly equal numbers (exactly 0 at step 1 from a zero state): the result
      // is rounding noise over eps, on any hardware and in Optax alike, unless the initial scale
      // dominates g². So those variants start v at 1 and take gradients up to 1 (not 1e3).
      const dataScale = o.centered && o.biasCorrection ? 1e-3 : 1;
      for (const seed of [1, 2, 3]) {
        const random = rng(seed), loose = looseStep(rng(seed * 7919)), nudge = rng(seed * 31);
        for (const size of VARIANT_SIZES) {
          const p0 = randomParams(size, random);
          const [pa, pb] = [p0.slice(), p0.slice()];
          const [sa, sb] = [createReferenceState(size, o), createReferenceState(size, o)];
          const scale = p0.map(Math.abs);
          for (let s = 0; s < VARIANT_STEPS; s++) {
            const g = randomGrads(size, random).map((x) => x * dataScale);
            const clip = gradNormStats([g], o.clipGradNorm).scale;
            // The GPU's clipping factor comes from its own sqrt and division: up to a few ULPs off.
            const looseClip = clip === 1 ? 1 : clip * (1 + (Math.floor(nudge() * 9) - 4) * 2 ** -24);
            stepResolved(pa, g, sa, o, 'fused', stepHyper(o, { step: s + 1, gradScale: clip }));
            loose(pb, g, sb, o, stepHyper(o, { step: s + 1, gradScale: looseClip }));
            pa.forEach((x, i) => { scale[i] = Math.max(scale[i]!, Math.abs(x)); });
            const r = compareUlps(pb, pa, scale);
            if (r.worst > worst) { worst = r.worst; where = `${name}, seed ${seed}, size ${size}, step ${s + 1}, param[${r.index}]`; }
          }
        }
      }
    }
    if (process.env.ULP_REPORT) console.info(`extensions, WGSL-loose rounding vs the reference: worst ${worst} ULPs (${where})`);
    expect(worst, where).toBeGreaterThan(0);
    expect(worst, where).toBeLessThanOrEqual(HARDWARE_TOLERANCE_ULPS);
  });
});
