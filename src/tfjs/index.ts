/**
 * webgpu-rmsprop/tfjs: this library's RMSProp as a `tf.Optimizer` for TensorFlow.js's WebGPU
 * backend, with TF.js's option names, defaults, weight names and serialization: a drop-in for
 * `tf.train.rmsprop` in `model.compile`, `model.fit` and `optimizer.minimize`. TF.js is a peer
 * dependency: pass your own `tf` namespace.
 *
 * @packageDocumentation
 */
export {
  tfjsRMSProp,
  registerWebGPURMSProp,
  convertTfjsWeights,
  WEBGPU_RMSPROP_CLASS_NAME,
  type WebGPURMSProp,
  type WebGPURMSPropClass,
} from './optimizer.js';
export type { TfjsRMSPropConfig, TfjsExtras } from './config.js';
export type { TfNamespace } from './backend-access.js';
