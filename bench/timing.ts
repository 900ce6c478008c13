/**
 * Timing a batch of GPU work: wall clock from the first submission to `onSubmittedWorkDone`, and,
 * where the device has 'timestamp-query', the GPU's own time between an empty compute pass
 * submitted before the batch and one submitted after it.
 */

/** One batch's duration, in milliseconds. */
export interface BatchTime {
  /** Wall clock, from before the first submission until the queue reports the work done. */
  readonly wallMs: number;
  /** GPU timestamps around the batch, when the device has 'timestamp-query'. */
  readonly gpuMs?: number;
}

const QUERY_RESOLVE = 0x200, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;

/**
 * Times batches of work on one device. `time(work, flush)` submits a begin marker, runs `work`
 * (which records and submits on the same queue), calls `flush` (for a library such as TF.js that
 * holds commands back), submits an end marker, and waits for all of it.
 *
 * @example
 * ```ts
 * const timer = new GpuTimer(device, device.features.has('timestamp-query'), () => performance.now());
 * const { wallMs, gpuMs } = await timer.time(() => { for (let i = 0; i < 10; i++) optimizer.step(); });
 * timer.destroy();
 * ```
 */
export class GpuTimer {
  readonly #device: GPUDevice;
  readonly #now: () => number;
  readonly #queries: { set: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer } | undefined;

  constructor(device: GPUDevice, timestamps: boolean, now: () => number) {
    this.#device = device;
    this.#now = now;
    this.#queries = timestamps
      ? {
          set: device.createQuerySet({ label: 'bench.timer.queries', type: 'timestamp', count: 2 }),
          resolve: device.createBuffer({ label: 'bench.timer.resolve', size: 16, usage: QUERY_RESOLVE | COPY_SRC }),
          read: device.createBuffer({ label: 'bench.timer.read', size: 16, usage: MAP_READ | COPY_DST }),
        }
      : undefined;
  }

  /** True when batches are timed by GPU timestamps as well as by the wall clock. */
  get timestamps(): boolean {
    return this.#queries !== undefined;
  }

  async time(work: () => void, flush: () => void = () => {}): Promise<BatchTime> {
    const q = this.#queries;
    const start = this.#now();
    if (q) this.#marker('begin', { querySet: q.set, beginningOfPassWriteIndex: 0 });
    work();
    flush();
    if (q) this.#marker('end', { querySet: q.set, endOfPassWriteIndex: 1 }, q);
    await this.#device.queue.onSubmittedWorkDone();
    const wallMs = this.#now() - start;
    if (!q) return { wallMs };
    await q.read.mapAsync(1 /* GPUMapMode.READ */);
    const [begin, end] = new BigInt64Array(q.read.getMappedRange().slice(0));
    q.read.unmap();
    const gpuMs = Number(end! - begin!) / 1e6;
    // WebGPU lets timestamps be quantized (Chromium: 100 µs) and even out of order: a batch shorter
    // than the quantum reads 0. Such a batch is timed by the wall clock (and so its whole case).
    if (!(gpuMs > 0)) return { wallMs };
    return { wallMs, gpuMs };
  }

  /** An empty compute pass that writes one timestamp; the end marker also resolves both. */
  #marker(which: string, timestampWrites: GPUComputePassTimestampWrites, resolve?: { set: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer }): void {
    const encoder = this.#device.createCommandEncoder({ label: `bench.timer.${which}` });
    encoder.beginComputePass({ label: `bench.timer.${which}`, timestampWrites }).end();
    if (resolve) {
      encoder.resolveQuerySet(resolve.set, 0, 2, resolve.resolve, 0);
      encoder.copyBufferToBuffer(resolve.resolve, 0, resolve.read, 0, 16);
    }
    this.#device.queue.submit([encoder.finish()]);
  }

  destroy(): void {
    this.#queries?.set.destroy();
    this.#queries?.resolve.destroy();
    this.#queries?.read.destroy();
  }
}

/**
 * The median of a non-empty list.
 *
 * @example
 * ```ts
 * median([3, 1, 2]); // 2
 * ```
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
