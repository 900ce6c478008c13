/**
 * Reading f32 ranges of GPU buffers back to the CPU: one copy into a MAP_READ staging buffer per
 * batch, mapped, sliced, and destroyed.
 */
import { USAGE_COPY_SRC, type ByteRange } from '../gpu/params.js';

const MAP_READ = 0x01, COPY_DST = 0x08;

/** Throws a TypeError unless `range`'s buffer can be copied from. */
export function checkReadable(range: ByteRange, where: string): void {
  if ((range.buffer.usage & USAGE_COPY_SRC) === 0) {
    const label = range.buffer.label ? ` ('${range.buffer.label}')` : '';
    throw new TypeError(
      `${where}: buffer${label} lacks GPUBufferUsage.COPY_SRC, so it cannot be read back: add COPY_SRC to its usage.`,
    );
  }
}

/**
 * The error of a call that cannot work because the device is lost: it names the call, the reason
 * the device gave, and how to resume (see docs/reliability.md).
 */
export function deviceLostError(
  what: string,
  info: { readonly reason: string; readonly message: string } | string,
): Error {
  const why = typeof info === 'string' ? info : `${info.reason}${info.message ? `: ${info.message}` : ''}`;
  return new Error(
    `${what}: the GPU device was lost (${why}). Steps submitted since the last checkpoint are gone: ` +
    'create a new device and optimizer, and loadStateDict from your last checkpoint.',
  );
}

/** How long a failed mapAsync waits for `device.lost` to settle, to tell a lost device from other failures. */
const LOST_GRACE_MS = 100;

/** What is known of a device's loss: its info once `device.lost` has settled. */
export interface DeviceLossWatch {
  readonly info: GPUDeviceLostInfo | undefined;
}

interface Watch extends DeviceLossWatch {
  info: GPUDeviceLostInfo | undefined;
  /** Called once when the device is lost; callers remove theirs when done. */
  readonly waiters: Set<(info: GPUDeviceLostInfo) => void>;
}

const watches = new WeakMap<GPUDevice, Watch>();

/**
 * One watch of `device.lost` per device, shared by every optimizer and read on it. (A `.then` or a
 * `Promise.race` on `device.lost` per optimizer or per read would stay attached to that promise,
 * which settles only when the device dies, and keep each optimizer and each read's result alive.)
 */
export function watchDeviceLoss(device: GPUDevice): DeviceLossWatch {
  let watch = watches.get(device);
  if (!watch) {
    const created: Watch = { info: undefined, waiters: new Set() };
    device.lost.then((info) => {
      created.info = info;
      for (const waiter of created.waiters) waiter(info);
      created.waiters.clear();
    }, () => {});
    watches.set(device, (watch = created));
  }
  return watch;
}

/**
 * Reads each range as a Float32Array, in order. The copies are submitted after all work
 * submitted before the call, so they see its results.
 *
 * If the device is lost before the data arrives, it rejects with `deviceLostError` rather than a
 * bare AbortError, and never waits on a mapAsync that a lost device might not settle.
 */
export async function readRanges(
  device: GPUDevice,
  ranges: readonly ByteRange[],
  label: string,
): Promise<Float32Array<ArrayBuffer>[]> {
  const watch = watchDeviceLoss(device) as Watch;
  if (watch.info) throw deviceLostError(`${label}()`, watch.info);
  let onLost!: (info: GPUDeviceLostInfo) => void;
  const lost = new Promise<{ lost: GPUDeviceLostInfo }>((resolve) => { onLost = (info) => resolve({ lost: info }); });
  watch.waiters.add(onLost);
  try {
    let result: { value: Float32Array<ArrayBuffer>[] } | { lost: GPUDeviceLostInfo };
    try {
      result = await Promise.race([readAll(device, ranges, label).then((value) => ({ value })), lost]);
    } catch (e) {
      // mapAsync rejects (AbortError, OperationError) on a device that is being lost, possibly before
      // `lost` settles: give it a moment to, so the caller learns the actual cause.
      let timer: Parameters<typeof clearTimeout>[0];
      const settled = await Promise.race([
        lost,
        new Promise<undefined>((resolve) => { timer = setTimeout(resolve, LOST_GRACE_MS); }),
      ]);
      clearTimeout(timer);
      if (settled) throw deviceLostError(`${label}()`, settled.lost);
      throw e;
    }
    if ('lost' in result) throw deviceLostError(`${label}()`, result.lost);
    return result.value;
  } finally {
    watch.waiters.delete(onLost);
  }
}

async function readAll(
  device: GPUDevice,
  ranges: readonly ByteRange[],
  label: string,
): Promise<Float32Array<ArrayBuffer>[]> {
  const out: Float32Array<ArrayBuffer>[] = [];
  const batchLimit = Math.min(device.limits.maxBufferSize, 256 * 1024 * 1024);
  for (let start = 0; start < ranges.length;) {
    let end = start, bytes = 0;
    while (end < ranges.length && (end === start || bytes + ranges[end]!.size <= batchLimit)) {
      bytes += ranges[end++]!.size;
    }
    out.push(...(await readBatch(device, ranges.slice(start, end), bytes, label)));
    start = end;
  }
  return out;
}

async function readBatch(
  device: GPUDevice,
  ranges: readonly ByteRange[],
  bytes: number,
  label: string,
): Promise<Float32Array<ArrayBuffer>[]> {
  const staging = device.createBuffer({ label: `${label}.staging`, size: bytes, usage: MAP_READ | COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: `${label}.copy` });
    let at = 0;
    for (const r of ranges) {
      encoder.copyBufferToBuffer(r.buffer, r.offset, staging, at, r.size);
      at += r.size;
    }
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ);
    const mapped = new Float32Array(staging.getMappedRange());
    at = 0;
    const out = ranges.map((r) => {
      const copy = mapped.slice(at / 4, (at + r.size) / 4); // copied out before unmap; the caller owns it
      at += r.size;
      return copy;
    });
    staging.unmap();
    return out;
  } finally {
    staging.destroy();
  }
}
