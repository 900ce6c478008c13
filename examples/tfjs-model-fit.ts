/**
 * A tfjs-layers model trained by `model.fit` with this library's RMSProp: `tfjsRMSProp(tf, config)`
 * from `webgpu-rmsprop/tfjs` is a `tf.Optimizer`, a drop-in for `tf.train.rmsprop` with TF.js's
 * option names and defaults. It runs on TF.js's own WebGPU device (one fused WGSL dispatch for every
 * variable instead of TF.js's ~15 kernels a variable), and saves and loads with the model (`includeOptimizer: true`).
 *
 * In a browser: `import * as tf from '@tensorflow/tfjs'`, `import '@tensorflow/tfjs-backend-webgpu'`,
 * `await tf.setBackend('webgpu')`, and the rest is as below. In Node, TF.js's WebGPU backend needs
 * `navigator.gpu` and a device from the `webgpu` package (Dawn): `useDeviceForTfjs` in
 * ./tfjs-variables.ts does that; the test beside this file shows it.
 *
 * Run it: `npx vitest run --project examples examples/tfjs-model-fit.test.ts`.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients'; // autodiff (the @tensorflow/tfjs bundle imports it for you)
import * as tfl from '@tensorflow/tfjs-layers';
import { registerWebGPURMSProp, tfjsRMSProp, type WebGPURMSProp } from 'webgpu-rmsprop/tfjs';

/** What one run gives: the loss of every epoch, and the loss of one more epoch for the model and its saved copy. */
export interface FitResult {
  readonly losses: number[];
  /** The next epoch's loss of the trained model and of the copy loaded from its save: the same. */
  readonly nextEpoch: { readonly original: number; readonly reloaded: number };
  /** What the save holds of the optimizer (its class and config, TF.js's weight names). */
  readonly savedOptimizer: { readonly className: string; readonly config: object; readonly weights: string[] };
}

/**
 * Fits `y = sin(2 x0) cos(x1)` with a 2-32-32-1 tanh MLP for `epochs` epochs, saves the model with its
 * optimizer, loads it back, and trains both one more epoch. TF.js must run on its 'webgpu' backend.
 *
 * @example
 * ```ts
 * await tf.setBackend('webgpu');
 * const { losses } = await fitWithWebGPURMSProp({ epochs: 20 });
 * ```
 */
export async function fitWithWebGPURMSProp(
  { epochs = 20, log = console.log }: { epochs?: number; log?: (line: string) => void } = {},
): Promise<FitResult> {
  const samples = 256;
  const xs = tf.tidy(() => tf.sub(tf.mul(tf.randomUniform([samples, 2], 0, 1, 'float32', 7), 4), 2));
  const ys = tf.tidy(() => {
    const [x0, x1] = tf.split(xs, 2, 1) as [tf.Tensor, tf.Tensor];
    return tf.mul(tf.sin(tf.mul(x0, 2)), tf.cos(x1));
  });
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ units: 32, activation: 'tanh', inputShape: [2], kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
      tfl.layers.dense({ units: 32, activation: 'tanh', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }),
      tfl.layers.dense({ units: 1, kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }),
    ],
  });
  // TF.js's names and defaults (learningRate 0.001, decay 0.9, epsilon 1e-7); clipGradNorm is one of this library's extras.
  const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.5, clipGradNorm: 10 });
  model.compile({ optimizer, loss: 'meanSquaredError' });
  // Its GPU pipelines started compiling off the thread when it was made: awaited here, the first step compiles nothing.
  await optimizer.ready();
  let reloaded: tfl.LayersModel | undefined;
  try {
    const history = await model.fit(xs, ys, {
      epochs, batchSize: 32, shuffle: false, verbose: 0,
      callbacks: { onEpochEnd: (epoch, logs) => { if (epoch % 5 === 0 || epoch === epochs - 1) log(`epoch ${String(epoch).padStart(3)}  loss ${logs!['loss']!.toExponential(3)}`); } },
    });
    // Save with the optimizer (here into memory; 'indexeddb://...', 'downloads://...' or a URL alike).
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }), { includeOptimizer: true });
    // Loading needs the class registered with TF.js: tfjsRMSProp did it; a fresh page calls registerWebGPURMSProp(tf).
    registerWebGPURMSProp(tf);
    reloaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
    const next = async (m: tfl.LayersModel) => (await m.fit(xs, ys, { epochs: 1, batchSize: 32, shuffle: false, verbose: 0 })).history['loss']![0] as number;
    const original = await next(model);
    const again = await next(reloaded);
    log(`one more epoch: loss ${original.toExponential(3)} (trained model), ${again.toExponential(3)} (loaded from its save)`);
    const optimizerConfig = artifacts!.trainingConfig!.optimizer_config as { class_name: string; config: object };
    return {
      losses: history.history['loss'] as number[],
      nextEpoch: { original, reloaded: again },
      savedOptimizer: {
        className: optimizerConfig.class_name,
        config: optimizerConfig.config,
        weights: artifacts!.weightSpecs!.filter((s) => s.group === 'optimizer').map((s) => s.name),
      },
    };
  } finally {
    (reloaded?.optimizer as WebGPURMSProp | undefined)?.dispose(); // a model does not dispose an optimizer it was given
    reloaded?.dispose();
    optimizer.dispose();
    model.dispose();
    tf.dispose([xs, ys]);
  }
}
