/**
 * Shared harness of the TF.js integration's tests in Node (vitest project `tfjs`): TF.js 4.22
 * (core with its gradients, layers, the WebGPU backend) on the file's Dawn device (test/gpu/harness.ts
 * `useDevice`, whose checks of uncaptured errors and error scopes apply), a seeded data set, and a
 * count of live GPU buffers.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients'; // autodiff (the @tensorflow/tfjs bundle imports it)
import * as tfl from '@tensorflow/tfjs-layers';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { beforeAll } from 'vitest';
import { nodeGpuInstance } from '../../demo/node/dawn.js';
import { useDevice, type GpuFixture } from '../gpu/harness.js';

export { tf, tfl };
export { agreement } from './fit-comparison.js';

/** One device per file (see test/gpu/harness.ts), with TF.js's 'webgpu' backend running on it. */
export function useTfjs(): GpuFixture {
  const gpu = useDevice();
  beforeAll(async () => {
    tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
    // TF.js's WebGPU backend checks that navigator.gpu exists (Node 20 has no navigator at all).
    const g = globalThis as { navigator?: { gpu?: unknown } };
    if (!g.navigator?.gpu) Object.defineProperty(globalThis, 'navigator', { value: { gpu: nodeGpuInstance() }, configurable: true, writable: true });
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', () => new WebGPUBackend(gpu.device));
    if (!(await tf.setBackend('webgpu'))) throw new Error('TF.js could not start its WebGPU backend on the test device.');
  });
  return gpu;
}

/** Gradients log-uniform in [10^lo, 10^hi], random signs, about 5% exact zeros (as test/unit/tfjs.test.ts). */
export function gradients(random: () => number, size: number, lo = -3, hi = 3): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: size }, () =>
    random() < 0.05 ? 0 : (random() < 0.5 ? -1 : 1) * 10 ** (lo + (hi - lo) * random()));
}

/**
 * A variable's values read through an op (`v * 1`, exact, -0 and NaN kept): reading the variable
 * itself with data() would leave TF.js a CPU copy of it, which changes how the next step writes it.
 */
export async function readThroughOp(v: tf.Tensor): Promise<Float32Array> {
  const copy = tf.mul(v, 1);
  try {
    return new Float32Array(await copy.data());
  } finally {
    copy.dispose();
  }
}

/** Where TF.js's WebGPU backend keeps a tensor's data (its internals, read only to check a test's premise). */
export function storageOf(t: tf.Tensor): { gpu: boolean; cpuValues: boolean; refCount: number } {
  const map = (tf.backend() as unknown as { tensorMap: { get(id: object): { resource?: unknown; values?: unknown; refCount: number } | undefined } }).tensorMap;
  const data = map.get(t.dataId);
  if (!data) throw new Error(`tensor ${t.id} is not on the WebGPU backend`);
  return { gpu: data.resource != null, cpuValues: data.values != null, refCount: data.refCount };
}

/** Whether TF.js's WebGPU backend holds recorded commands it has not submitted yet. */
export function tfjsHasQueuedWork(): boolean {
  return (tf.backend() as unknown as { commandEncoder: unknown }).commandEncoder != null;
}

/**
 * A GPU-resident tensor of `values` (no CPU copy): `values + zerosLike(values)`, where zerosLike is a
 * fill kernel, which runs on the GPU (TF.js runs small ops whose inputs are all on the CPU on the CPU).
 */
export function onGpu(values: Float32Array | number[], shape?: number[]): tf.Tensor {
  return tf.tidy(() => {
    const cpu = tf.tensor(values, shape);
    return tf.add(cpu, tf.zerosLike(cpu));
  });
}

/**
 * Counts the device's live GPU buffers: every createBuffer from now on, and which were destroyed.
 * TF.js pools its buffers (it destroys them only when the backend is disposed), so a count that stays
 * flat means nobody allocates per step.
 */
export function trackBuffers(device: GPUDevice): { live: () => number; liveLabelled: (prefix: RegExp) => number; restore: () => void } {
  const created: { buffer: GPUBuffer; label: string; destroyed: boolean }[] = [];
  const original = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor) => {
    const buffer = original(descriptor);
    const entry = { buffer, label: descriptor.label ?? '', destroyed: false };
    const destroy = buffer.destroy.bind(buffer);
    buffer.destroy = () => { entry.destroyed = true; destroy(); };
    created.push(entry);
    return buffer;
  };
  return {
    live: () => created.filter((e) => !e.destroyed).length,
    liveLabelled: (prefix) => created.filter((e) => !e.destroyed && prefix.test(e.label)).length,
    restore: () => { device.createBuffer = original; },
  };
}
