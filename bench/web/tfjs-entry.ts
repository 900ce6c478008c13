/**
 * TF.js for the benchmark page, built into one browser ESM file (dist-bench/web/tfjs.js) by
 * `vite build --config vite.bench.config.ts --mode web`.
 */
export * as tf from '@tensorflow/tfjs-core';
export { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
