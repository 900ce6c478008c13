// 'webgpu-rmsprop/tfjs', type-checked from the packed package's .d.ts against the consumer's own
// @tensorflow/tfjs-core types (tsconfig.nodenext.json, tsconfig.bundler.json). Each @ts-expect-error
// must meet a real error: if the types resolved to `any`, it would be unused, and tsc fails.
import * as tf from '@tensorflow/tfjs-core';
import {
  registerWebGPURMSProp,
  tfjsRMSProp,
  WEBGPU_RMSPROP_CLASS_NAME,
  type TfjsRMSPropConfig,
  type WebGPURMSProp,
} from 'webgpu-rmsprop/tfjs';

export async function compileWith(model: { compile(args: { optimizer: tf.Optimizer; loss: string }): void }): Promise<number> {
  const config: TfjsRMSPropConfig = { learningRate: 1e-3, decay: 0.9, momentum: 0.9, clipGradNorm: 1, weightDecay: 1e-4 };
  const optimizer: WebGPURMSProp = tfjsRMSProp(tf, config);
  model.compile({ optimizer, loss: 'meanSquaredError' });
  optimizer.learningRate = optimizer.learningRate / 2;
  const alpha: number = optimizer.options.alpha;
  const cls = registerWebGPURMSProp(tf);
  const again: WebGPURMSProp = new cls({ learningRate: 0.01 });
  again.dispose();
  // @ts-expect-error this library's name for the learning rate is refused: TF.js's is learningRate
  tfjsRMSProp(tf, { lr: 0.01 });
  // @ts-expect-error TF.js variables are float32: no 16-bit gradients
  tfjsRMSProp(tf, { gradDtype: 'f16' });
  const either = tfjsRMSProp(tf, { fallback: 'tfjs' });
  // @ts-expect-error with the fallback it may be tf.train.rmsprop, which has no skippedSteps
  await either.skippedSteps();
  either.dispose();
  return WEBGPU_RMSPROP_CLASS_NAME.length + alpha + (await optimizer.skippedSteps());
}
