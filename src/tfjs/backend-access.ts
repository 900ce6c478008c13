/**
 * What the TF.js integration reads of TF.js's WebGPU backend where TF.js has no public API: its
 * device, where a tensor's data lives (`tensorMap`: a GPUBuffer, CPU values, both, its reference
 * count), and how to submit the commands it holds back. Each is feature-detected; a backend without
 * them is refused with a message that names the fix. Written against tfjs-backend-webgpu 4.22.
 */
import type * as TF from '@tensorflow/tfjs-core';

/**
 * The parts of TF.js's namespace the integration uses: the caller's own `tf` (`@tensorflow/tfjs`,
 * or `@tensorflow/tfjs-core`), never a copy of ours.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * const namespace: TfNamespace = tf;
 * const optimizer = tfjsRMSProp(namespace, { learningRate: 1e-3 });
 * ```
 */
export type TfNamespace = Pick<typeof TF,
  | 'Optimizer' | 'backend' | 'getBackend' | 'engine' | 'serialization' | 'train'
  | 'tensor' | 'variable' | 'scalar' | 'zerosLike' | 'dispose'>;

/** A tensor's data in tfjs-backend-webgpu 4.22 (`TensorData` in backend_webgpu.ts): the fields read here. */
interface TensorData {
  readonly values?: unknown;
  readonly resource?: unknown;
  readonly refCount?: unknown;
  readonly external?: unknown;
}

/** The internals of `WebGPUBackend` this integration relies on. */
interface WebGPUBackendInternals {
  readonly device: GPUDevice;
  /** `data()`'s read: copies to a staging buffer, awaits mapAsync, then caches the values in the data entry. */
  read(dataId: object): Promise<unknown>;
  readonly tensorMap: { get(dataId: object): TensorData | undefined; has(dataId: object): boolean };
  readonly commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/**
 * Where a tensor's data is, as far as an in-place update cares:
 * - `gpu`: a GPUBuffer of the backend's, with its reference count (tensors sharing the data: a
 *   `clone`, `tf.variable(t)`, a `setWeights` that assigned another tensor), whether TF.js also
 *   keeps a CPU copy (`cached`: a `data()` / `dataSync()` read it) or will (`reading`: a `data()` in
 *   flight), and whether the buffer is the app's (`external`: made with `zeroCopy`);
 * - `cpu`: values on the CPU only (a fresh `tf.tensor`, an initializer TF.js ran on the CPU);
 * - `elsewhere`: the data belongs to another backend.
 */
export type TensorStorage =
  | {
    readonly kind: 'gpu';
    readonly buffer: GPUBuffer;
    readonly refCount: number;
    readonly cached: boolean;
    readonly external: boolean;
    /** A `data()` of it is in flight: when it resolves, TF.js caches what it read as the data's values. */
    readonly reading: boolean;
  }
  | { readonly kind: 'cpu'; readonly values: Float32Array }
  | { readonly kind: 'elsewhere' };

// GPUBufferUsage flags, spelled out so that importing this module needs no WebGPU globals.
const COPY_SRC = 0x04, COPY_DST = 0x08;

/** What a tensor's buffer needs so that the integration may copy from it and write it in place. */
export const USAGE_COPY_BOTH = COPY_SRC | COPY_DST;

/**
 * The WebGPU backend TF.js runs on, read through its internals. Made by {@link webgpuBackend}.
 *
 * @example
 * ```ts
 * const access = webgpuBackend(tf, 'applyGradients');
 * access.flush(); // TF.js's queued kernels are now submitted
 * const where = access.storage(variable); // { kind: 'gpu', buffer, refCount: 1, cached: false, external: false }
 * ```
 */
export class BackendAccess {
  /** The backend object (`tf.backend()`). */
  readonly backend: object;
  /** The backend's own device, which TF.js's buffers belong to. */
  readonly device: GPUDevice;
  readonly #internals: WebGPUBackendInternals;
  /** Data ids with reads in flight, and how many (see {@link BackendAccess.watchReads}). */
  readonly #reading = new Map<object, number>();

  constructor(backend: object, internals: WebGPUBackendInternals) {
    this.backend = backend;
    this.device = internals.device;
    this.#internals = internals;
  }

  /**
   * Wraps the backend's `read` (what `tensor.data()` calls), once, to count the reads in flight per
   * data id. TF.js 4.22 keeps no record of them: a read copies the buffer to a staging buffer, awaits
   * the map, and then stores what it read as the data's CPU values, which every later `data()` and
   * `dataSync()` returns. A step that wrote such a variable's buffer in place would leave that cache
   * stale for good; with this count, the step gives the variable a new buffer instead (as `assign`
   * in `tf.train.rmsprop` does), and the read in flight resolves or rejects as it would with TF.js's.
   */
  watchReads(): void {
    const internals = this.#internals as { read: (dataId: object) => Promise<unknown> };
    const read = internals.read;
    const reading = this.#reading;
    internals.read = async function watchedRead(this: unknown, dataId: object) {
      reading.set(dataId, (reading.get(dataId) ?? 0) + 1);
      try {
        return await read.call(this, dataId);
      } finally {
        const n = reading.get(dataId)! - 1;
        if (n === 0) reading.delete(dataId);
        else reading.set(dataId, n);
      }
    };
  }

  /**
   * Submits the commands TF.js has recorded but not submitted (it submits every 15 dispatches, or
   * when it reads): after this, work submitted to the queue sees every kernel TF.js has run. This is
   * what the backend's own reads do first (`getBufferData`, `readToGPU`).
   */
  flush(): void {
    const b = this.#internals;
    if (b.commandEncoder === null || b.commandEncoder === undefined) return;
    b.endComputePassEncoder();
    b.submitQueue();
  }

  /** Where `tensor`'s data is (see {@link TensorStorage}). */
  storage(tensor: TF.Tensor): TensorStorage {
    const map = this.#internals.tensorMap;
    const data = map.has(tensor.dataId) ? map.get(tensor.dataId) : undefined;
    if (data === undefined) return { kind: 'elsewhere' };
    const { resource, values, refCount, external } = data;
    if (resource !== null && resource !== undefined) {
      if (!isGpuBuffer(resource)) {
        throw new TypeError(`tensor ${tensor.id} (shape [${tensor.shape.join(', ')}]) lives in a ` +
          `${describeObject(resource)}, not a GPUBuffer: the WebGPU RMSProp trains buffers only (a texture comes ` +
          'from tf.browser.fromPixels; tf.clone() it first).');
      }
      const cached = values !== null && values !== undefined;
      return {
        kind: 'gpu', buffer: resource, refCount: count(refCount), cached, external: external === true,
        reading: this.#reading.has(tensor.dataId),
      };
    }
    if (values instanceof Float32Array) return { kind: 'cpu', values };
    throw new TypeError(`tensor ${tensor.id} has neither a GPU buffer nor float32 values in TF.js's WebGPU backend ` +
      `(values: ${describeObject(values)}); was it disposed?`);
  }
}

const cache = new WeakMap<object, BackendAccess>();

/**
 * The active TF.js backend as a {@link BackendAccess}, or a TypeError naming the fix: when the
 * backend is not `'webgpu'`, or when it lacks an internal this integration needs (another TF.js
 * version than the peer range `^4.22`). Reads nothing on the GPU.
 *
 * @example
 * ```ts
 * const { device } = webgpuBackend(tf, 'tfjsRMSProp'); // the GPUDevice TF.js computes on
 * ```
 */
export function webgpuBackend(tf: TfNamespace, where: string): BackendAccess {
  const name = tf.getBackend();
  if (name !== 'webgpu') {
    throw new TypeError(`${where}: TF.js's active backend is '${name}', and the WebGPU RMSProp runs on TF.js's ` +
      "'webgpu' backend. " +
      "Register it first: `import '@tensorflow/tfjs-backend-webgpu'` then `await tf.setBackend('webgpu')` (in Node, " +
      "`tf.registerBackend('webgpu', () => new WebGPUBackend(device))` with a device from the `webgpu` package); " +
      "or pass `fallback: 'tfjs'` to tfjsRMSProp to get tf.train.rmsprop on other backends.");
  }
  const backend = tf.backend() as unknown as object;
  const known = cache.get(backend);
  if (known) return known;
  const b = backend as Partial<Record<keyof WebGPUBackendInternals, unknown>>;
  const missing: string[] = [];
  const device = b.device as Partial<GPUDevice> | null | undefined;
  const deviceOk = typeof device === 'object' && device !== null && typeof device.createCommandEncoder === 'function';
  if (!deviceOk) missing.push('device');
  const map = b.tensorMap as { get?: unknown; has?: unknown } | undefined;
  const mapOk = typeof map === 'object' && map !== null &&
    typeof map.get === 'function' && typeof map.has === 'function';
  if (!mapOk) missing.push('tensorMap');
  if (!('commandEncoder' in backend)) missing.push('commandEncoder');
  if (typeof b.endComputePassEncoder !== 'function') missing.push('endComputePassEncoder()');
  if (typeof b.submitQueue !== 'function') missing.push('submitQueue()');
  if (typeof b.read !== 'function') missing.push('read()');
  if (missing.length > 0) {
    throw new TypeError(`${where}: this TF.js WebGPU backend lacks ${missing.join(', ')}, internals the WebGPU ` +
      'RMSProp reads (it is written against @tensorflow/tfjs-backend-webgpu 4.22, its peer range ^4.22). ' +
      'Install a 4.x release from 4.22 on, ' +
      "or pass `fallback: 'tfjs'` to use tf.train.rmsprop.");
  }
  const access = new BackendAccess(backend, backend as unknown as WebGPUBackendInternals);
  access.watchReads();
  cache.set(backend, access);
  return access;
}

function isGpuBuffer(x: unknown): x is GPUBuffer {
  const b = x as Partial<GPUBuffer>;
  return typeof x === 'object' && x !== null &&
    typeof b.mapAsync === 'function' && typeof b.size === 'number' && typeof b.usage === 'number';
}

function count(refCount: unknown): number {
  // A backend that stopped counting references: treat the data as shared, so that it is never written in place.
  return typeof refCount === 'number' && Number.isInteger(refCount) ? refCount : Number.POSITIVE_INFINITY;
}

function describeObject(x: unknown): string {
  if (x === null || x === undefined) return String(x);
  if (typeof x === 'object') return x.constructor?.name ? `a ${x.constructor.name}` : 'an object';
  return typeof x;
}
