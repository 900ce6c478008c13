/**
 * Small tfjs-layers models and seeded data for the TF.js integration's tests (Node and the browser
 * page) and its benchmark. Everything takes the caller's TF.js namespaces, so that the browser page
 * can pass its bundle's and Node the modules it imported; nothing here touches a GPU by itself.
 */
import type * as TF from '@tensorflow/tfjs-core';
import type * as TFL from '@tensorflow/tfjs-layers';
import { mulberry32 } from '../../demo/problems/random.js';

export type Tf = typeof TF;
export type Tfl = typeof TFL;

/** The models: a 3-layer MLP, a small conv net, and a 16-layer MLP of 32 variables (the benchmark's). */
export type ModelKind = 'mlp' | 'conv' | 'deep';

/** Inputs and targets of a regression (mlp, deep) or a 3-class classification (conv). */
export interface Data {
  readonly x: TF.Tensor;
  readonly y: TF.Tensor;
  readonly samples: number;
}

/**
 * A model of `kind` with seeded weights (uniform in ±0.5 × sqrt(3 / fan-in), biases ±0.05): the
 * same seed, the same weights, on every machine and backend.
 */
export function makeModel(tf: Tf, tfl: Tfl, kind: ModelKind, seed = 1): TFL.Sequential {
  const model = tfl.sequential({ layers: layersOf(tfl, kind) });
  const random = mulberry32(seed);
  const values = model.weights.map((w) => {
    const fanIn = w.shape.length > 1 ? w.shape.slice(0, -1).reduce((a, b) => a! * b!, 1)! : 0;
    const scale = fanIn > 0 ? Math.sqrt(3 / fanIn) : 0.05;
    const size = w.shape.reduce((a, b) => a! * b!, 1)!;
    return tf.tensor(Float32Array.from({ length: size }, () => (random() * 2 - 1) * scale), w.shape as number[]);
  });
  model.setWeights(values); // assigns them: the variables share their data
  tf.dispose(values); // the variables keep it
  return model;
}

function layersOf(tfl: Tfl, kind: ModelKind): TFL.layers.Layer[] {
  switch (kind) {
    case 'mlp':
      return [
        tfl.layers.dense({ units: 16, activation: 'tanh', inputShape: [8] }),
        tfl.layers.dense({ units: 16, activation: 'relu' }),
        tfl.layers.dense({ units: 1 }),
      ];
    case 'conv':
      return [
        tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', inputShape: [8, 8, 1] }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.conv2d({ filters: 8, kernelSize: 2, activation: 'relu' }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ];
    case 'deep':
      return Array.from({ length: 16 }, (_, i) =>
        tfl.layers.dense({ units: i === 15 ? 1 : 64, activation: i === 15 ? 'linear' : 'tanh', ...(i === 0 ? { inputShape: [64] } : {}) }));
  }
}

/** The loss each kind is compiled with. */
export function lossOf(kind: ModelKind): string {
  return kind === 'conv' ? 'categoricalCrossentropy' : 'meanSquaredError';
}

/** Seeded data for `kind`: `samples` inputs and their targets (a smooth function, or 3 classes). */
export function makeData(tf: Tf, kind: ModelKind, samples: number, seed = 2): Data {
  const random = mulberry32(seed);
  if (kind === 'conv') {
    const x = Float32Array.from({ length: samples * 64 }, () => random());
    const labels = Array.from({ length: samples }, (_, i) => {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum += x[i * 64 + k]! * (k < 32 ? 1 : -1);
      return sum > 1 ? 0 : sum < -1 ? 2 : 1;
    });
    return { x: tf.tensor4d(x, [samples, 8, 8, 1]), y: tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), 3), 'float32')), samples };
  }
  const width = kind === 'deep' ? 64 : 8;
  const x = Float32Array.from({ length: samples * width }, () => random() * 2 - 1);
  const y = Float32Array.from({ length: samples }, (_, i) => Math.sin(x[i * width]! * 2) + 0.5 * x[i * width + 1]!);
  return { x: tf.tensor2d(x, [samples, width]), y: tf.tensor2d(y, [samples, 1]), samples };
}

/**
 * The models' weights, read through an op (`w * 1`: exact, and it leaves TF.js no CPU copy of the
 * variable, which would change how the next step writes it) or directly (`w.data()`, which does).
 */
export async function readWeights(tf: Tf, model: TFL.LayersModel, how: 'op' | 'data' = 'op'): Promise<Float32Array[]> {
  return Promise.all(model.weights.map(async (w) => {
    const v = w.read();
    if (how === 'data') return new Float32Array(await v.data());
    const copy = tf.mul(v, 1);
    try {
      return new Float32Array(await copy.data());
    } finally {
      copy.dispose();
    }
  }));
}
