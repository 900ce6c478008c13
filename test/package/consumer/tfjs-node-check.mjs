// Node: 'webgpu-rmsprop/tfjs' from the tarball, with TF.js's own Node builds (tfjs-core and the WebGPU
// backend, CommonJS) on Dawn. Plain Node has no TF.js gradients (tfjs-core's CommonJS build leaves
// them out), so this gives both optimizers the same gradient tensors: the WebGPU RMSProp and
// tf.train.rmsprop, 5 steps, then reports how far apart they are and what getWeights names.
import { create, globals } from 'webgpu';
import * as tf from '@tensorflow/tfjs-core';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { tfjsRMSProp, WEBGPU_RMSPROP_CLASS_NAME } from 'webgpu-rmsprop/tfjs';
import { describe } from './check.js';

Object.assign(globalThis, globals);
const gpu = create([]); // keep it referenced: Dawn's devices crash if their GPU object is collected
Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true }); // TF.js looks for navigator.gpu
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error('No WebGPU adapter in Node (Dawn).');
const device = await adapter.requestDevice({ label: 'consumer (tfjs)' });
tf.env().set('IS_TEST', true);
tf.registerBackend('webgpu', () => new WebGPUBackend(device));
await tf.setBackend('webgpu');

const SIZE = 1037, STEPS = 5;
let seed = 5;
const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
const initial = Float32Array.from({ length: SIZE }, random);
const ours = tf.variable(tf.tensor1d(initial), true, 'consumer/ours');
const theirs = tf.variable(tf.tensor1d(initial), true, 'consumer/theirs');
const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.9 });
const reference = tf.train.rmsprop(0.01, 0.9, 0.9);
device.pushErrorScope('validation');
const floor = initial.map(Math.abs);
let worst = 0;
const view = new DataView(new ArrayBuffer(4));
const ulp = (x) => { view.setFloat32(0, Math.max(Math.fround(x), 2 ** -126)); view.setUint32(0, view.getUint32(0) + 1); return view.getFloat32(0) - Math.fround(Math.max(x, 2 ** -126)); };
for (let s = 0; s < STEPS; s++) {
  const g = tf.tensor1d(Float32Array.from({ length: SIZE }, () => random() * 10));
  optimizer.applyGradients({ [ours.name]: g });
  reference.applyGradients({ [theirs.name]: g });
  g.dispose();
  const read = async (v) => { const c = tf.mul(v, 1); const d = await c.data(); c.dispose(); return d; };
  const [a, b] = [await read(ours), await read(theirs)];
  for (let i = 0; i < SIZE; i++) {
    floor[i] = Math.max(floor[i], Math.abs(b[i]));
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / ulp(Math.max(Math.abs(a[i]), Math.abs(b[i]), floor[i])));
  }
}
const weights = await optimizer.getWeights();
const error = await device.popErrorScope();
console.log(JSON.stringify({
  steps: STEPS,
  worstUlps: worst,
  className: optimizer.getClassName(),
  expectedClassName: WEBGPU_RMSPROP_CLASS_NAME,
  weightNames: weights.map((w) => w.name),
  validationError: error ? error.message : null,
  adapter: describe(adapter.info),
}));
optimizer.dispose();
reference.dispose();
device.destroy();
process.exit(0);
