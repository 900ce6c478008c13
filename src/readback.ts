/**
 * Reading f32 ranges of GPU buffers back to the CPU: one copy into a MAP_READ staging buffer per
 * batch, mapped, sliced, and destroyed.
 */
import { USAGE_COPY_SRC, type ByteRange } from './params.js';

const MAP_READ = 0x01, COPY_DST = 0x08;

/** Throws a TypeError unless `range`'s buffer can be copied from. */
export function checkReadable(range: ByteRange, where: string): void {
  if ((range.buffer.usage & USAGE_COPY_SRC) === 0) {
    const label = range.buffer.label ? ` ('${range.buffer.label}')` : '';
    throw new TypeError(`${where}: buffer${label} lacks GPUBufferUsage.COPY_SRC, so it cannot be read back: add COPY_SRC to its usage.`);
  }
}

/**
 * Reads each range as a Float32Array, in order. The copies are submitted after all work
 * submitted before the call, so they see its results.
 */
export async function readRanges(device: GPUDevice, ranges: readonly ByteRange[], label: string): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const batchLimit = Math.min(device.limits.maxBufferSize, 256 * 1024 * 1024);
  for (let start = 0; start < ranges.length;) {
    let end = start, bytes = 0;
    while (end < ranges.length && (end === start || bytes + ranges[end]!.size <= batchLimit)) bytes += ranges[end++]!.size;
    out.push(...(await readBatch(device, ranges.slice(start, end), bytes, label)));
    start = end;
  }
  return out;
}

async function readBatch(device: GPUDevice, ranges: readonly ByteRange[], bytes: number, label: string): Promise<Float32Array[]> {
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
