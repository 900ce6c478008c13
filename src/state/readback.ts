/**
 * Reading f32 ranges of GPU buffers back to the CPU as one snapshot: every copy into MAP_READ staging
 * buffers in one submission, made before the first await, then each staging buffer mapped, copied out
 * and destroyed in turn.
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
 * Bytes of one staging buffer at most (and never more than the device's `maxBufferSize`): a read
 * larger than this is copied into several, all in one submission, and mapped one after another, so
 * that no single buffer or mapping holds more. Tests lower it to make a small read span several.
 */
export const readbackLimits = { stagingBytes: 64 * 1024 * 1024 };

/**
 * Reads each range as a Float32Array, in order, as one snapshot: every range is copied into
 * MAP_READ staging buffers by one command buffer, submitted before this function returns its
 * promise (so it sees all work submitted before the call and none submitted after, however large
 * the read), then mapped in pieces.
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
  const snapshot = copySnapshot(device, ranges, label); // submitted here, before any await
  let onLost!: (info: GPUDeviceLostInfo) => void;
  const lost = new Promise<{ lost: GPUDeviceLostInfo }>((resolve) => { onLost = (info) => resolve({ lost: info }); });
  watch.waiters.add(onLost);
  try {
    let result: { value: Float32Array<ArrayBuffer>[] } | { lost: GPUDeviceLostInfo };
    try {
      result = await Promise.race([mapSnapshot(snapshot).then((value) => ({ value })), lost]);
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
    for (const s of snapshot.staging) s.buffer.destroy(); // those not mapped yet, if it failed (twice is fine)
  }
}

/** A piece of a range in a staging buffer: its byte offset there and in the range, and its bytes. */
interface Piece {
  readonly range: number;
  readonly at: number;
  readonly into: number;
  readonly size: number;
}

/** Ranges copied into staging buffers, and where each piece of each range went. */
interface Snapshot {
  readonly staging: { readonly buffer: GPUBuffer; readonly pieces: readonly Piece[] }[];
  readonly out: Float32Array<ArrayBuffer>[];
}

/**
 * Lays the ranges end to end over staging buffers of at most `stagingBytesOf(device)` each (a range
 * split where one ends) and records every copy into one command buffer, submitted now.
 */
function copySnapshot(device: GPUDevice, ranges: readonly ByteRange[], label: string): Snapshot {
  const limit = stagingBytesOf(device);
  const layout: Piece[][] = [];
  let current: Piece[] = [], used = 0;
  ranges.forEach((r, range) => {
    for (let into = 0; into < r.size;) {
      if (used === limit) {
        layout.push(current);
        current = [];
        used = 0;
      }
      const size = Math.min(r.size - into, limit - used);
      current.push({ range, at: used, into, size });
      used += size;
      into += size;
    }
  });
  if (current.length > 0) layout.push(current);
  const staging = layout.map((pieces, i) => {
    const last = pieces.at(-1)!;
    const buffer = device.createBuffer({
      label: `${label}.staging${layout.length > 1 ? `[${i}]` : ''}`,
      size: last.at + last.size,
      usage: MAP_READ | COPY_DST,
    });
    return { buffer, pieces };
  });
  if (staging.length > 0) {
    const encoder = device.createCommandEncoder({ label: `${label}.copy` });
    for (const { buffer, pieces } of staging) {
      for (const p of pieces) {
        const r = ranges[p.range]!;
        encoder.copyBufferToBuffer(r.buffer, r.offset + p.into, buffer, p.at, p.size);
      }
    }
    device.queue.submit([encoder.finish()]);
  }
  return { staging, out: ranges.map((r) => new Float32Array(r.size / 4)) };
}

/** Maps the staging buffers one at a time, copying each piece into its range's array, and destroys them. */
async function mapSnapshot({ staging, out }: Snapshot): Promise<Float32Array<ArrayBuffer>[]> {
  for (const { buffer, pieces } of staging) {
    await buffer.mapAsync(MAP_READ);
    const mapped = buffer.getMappedRange();
    for (const p of pieces) {
      new Uint8Array(out[p.range]!.buffer, p.into, p.size).set(new Uint8Array(mapped, p.at, p.size));
    }
    buffer.unmap();
    buffer.destroy();
  }
  return out;
}

/** The staging limit on this device: `readbackLimits.stagingBytes` or `maxBufferSize`, whichever is less, in words. */
function stagingBytesOf(device: GPUDevice): number {
  return Math.max(4, Math.floor(Math.min(device.limits.maxBufferSize, readbackLimits.stagingBytes) / 4) * 4);
}
