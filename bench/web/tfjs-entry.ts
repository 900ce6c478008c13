/**
 * TF.js for the browser pages (the benchmark page, test/browser/tfjs-page), built into one browser
 * ESM file by `vite build --config vite.bench.config.ts --mode web` (dist-bench/web/tfjs.js; the
 * browser test builds its own copy): tfjs-core with its gradients, tfjs-layers and the WebGPU
 * backend, one copy of tfjs-core for all three.
 */
import '@tensorflow/tfjs-core/dist/register_all_gradients'; // autodiff (the @tensorflow/tfjs bundle imports it)
export * as tf from '@tensorflow/tfjs-core';
export * as tfl from '@tensorflow/tfjs-layers';
export { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
