// The consumer check's data, shared with test/package/pack.test.ts (which replays the same steps
// on the repository's CPU twin, to bound the GPU's distance): no imports, plain JavaScript.

export const STEPS = 5;
export const SIZES = [1037, 3]; // not multiples of 4: the shader's vec4 body and its scalar tail
export const OPTIONS = { lr: 0.01, momentum: 0.9, centered: true };

/** A deterministic generator (mulberry32) of numbers in [-1, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  };
}

/** The initial parameters of each tensor and each step's gradients, always the same. */
export function trainingData() {
  const random = rng(42);
  const initial = SIZES.map((size) => Float32Array.from({ length: size }, random));
  const grads = [];
  for (let step = 0; step < STEPS; step++) {
    grads.push(SIZES.map((size) => Float32Array.from({ length: size }, (_, i) => random() * 10 ** ((i % 5) - 2))));
  }
  return { initial, grads };
}
