/**
 * A tensor past the storage binding limit: on a device with WebGPU's DEFAULT limits (128 MiB per
 * storage binding, 256 MiB per buffer), a 160 MB tensor with all three state slots is split into
 * chunks (src/gpu/plan.ts) and trains exactly as the CPU reference, every element compared, chunk
 * seams included.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { describeLimits, requestNodeDevice } from '../../demo/node/dawn.js';
import { maxChunkElements, planChunks, stateSlots } from '../../src/gpu/plan.js';
import { randomGrads, rng, useDevice, withErrorScopes } from './harness.js';
import { Twin } from './twin.js';

// The file's own device (adapter limits) sets MULTIPLY_ADD and the tolerance for the twin.
useDevice();

let device: GPUDevice | undefined;
const uncaptured: string[] = [];

beforeAll(async () => {
  const found = await requestNodeDevice({ defaultLimits: true, label: 'webgpu-rmsprop huge tests (default limits)' });
  device = found.device;
  device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
  console.info(`default-limits device: ${describeLimits(device, found.adapter)}`);
});

afterAll(() => device?.destroy());

/**
 * Gradients for 40M elements without 120M RNG calls (seconds on this machine): `pool` (random
 * magnitudes 1e-3 to 1e3, signs, zeros) read with a stride prime to its length, shifted per step.
 */
function cheapGrads(size: number, pool: Float32Array, step: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0, j = step * 7919; i < size; i++, j = (j + 40_009) % pool.length) out[i] = pool[j]!;
  return out;
}

describe('a tensor larger than maxStorageBufferBindingSize', () => {
  // 40,000,003 f32: 160 MB per parameter and gradient, 480 MB of state, a tail of 3.
  const size = 40_000_003;
  const options = { centered: true, momentum: 0.9, weightDecay: 0.01, lr: 1e-3 };

  test('40,000,003 elements (160 MB), centered + momentum, on default limits: split into chunks, bit-exact with the CPU reference', async () => {
    const d = device!;
    // WebGPU's default limits, as the spec fixes them: the tensor does not fit one binding.
    expect(d.limits.maxStorageBufferBindingSize).toBe(128 * 1024 * 1024);
    expect(d.limits.maxBufferSize).toBe(256 * 1024 * 1024);
    expect(size * 4).toBeGreaterThan(d.limits.maxStorageBufferBindingSize);
    const chunks = planChunks(size, maxChunkElements(d.limits.maxStorageBufferBindingSize, d.limits.maxBufferSize, stateSlots(options)));
    expect(chunks.length).toBe(4);
    expect(chunks.at(-1)!.tailCount).toBe(3);

    await withErrorScopes(d, async () => {
      const twin = Twin.ofSizes(d, [size], options, 11);
      try {
        // Two steps, lr changed before the second, every parameter compared after each, then all the state.
        const pool = randomGrads(65_537, rng(5));
        for (const [step, lr] of [[0, 1e-3], [1, 3e-3]] as const) {
          twin.lr = lr;
          twin.setGrads([cheapGrads(size, pool, step)]);
          twin.step();
          await twin.expectParams();
        }
        await twin.expectState();
      } finally {
        twin.destroy();
      }
    });
    await d.queue.onSubmittedWorkDone();
    expect(uncaptured, 'uncaptured WebGPU errors').toEqual([]);
  }, 120_000);
});
