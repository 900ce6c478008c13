/**
 * A tensor past the storage binding limit: on a device with WebGPU's DEFAULT limits (128 MiB per
 * storage binding, 256 MiB per buffer), a 160 MB tensor with all three state slots is split into
 * chunks (src/gpu/plan.ts) and trains exactly as the CPU reference, every element compared, chunk
 * seams included.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { describeLimits, requestNodeDevice } from '../../demo/node/dawn.js';
import { maxChunkElements, planChunks, stateSlots } from '../../src/gpu/plan.js';
import { randomGrads, rng, TOLERANCE, useDevice, withErrorScopes } from './harness.js';
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

describe('8-bit state past maxStorageBufferBindingSize', () => {
  // 33,558,531 f32 (128 MiB + 4099 elements): two chunks of whole 256-element blocks, the second of
  // 4099 elements ending in a block of 3. One step (SwiftShader runs the 8-bit step slowly).
  const size = 32 * 1024 * 1024 + 4099;
  const options = { stateDtype: 'int8-blockwise' as const, lr: 1e-3 };

  test('33,558,531 elements, stateDtype int8-blockwise, on default limits: chunks of whole blocks, as the CPU twin', async () => {
    const d = device!;
    expect(size * 4).toBeGreaterThan(d.limits.maxStorageBufferBindingSize);
    await withErrorScopes(d, async () => {
      const twin = Twin.ofSizes(d, [size], options, 13);
      try {
        expect(twin.gpu.dispatchesPerStep.dispatches, 'two chunks, one dispatch each, and countStep').toBe(3);
        const pool = randomGrads(65_537, rng(6));
        twin.setGrads([cheapGrads(size, pool, 0)]);
        twin.step();
        const [gpu, cpu] = [await twin.gpu.stateDict(), await twin.cpu.stateDict()];
        const [g, c] = [gpu.tensors[0]!, cpu.tensors[0]!];
        expect(g.codes!.length).toBe(size);
        expect(g.absmax!.length).toBe(Math.ceil(size / 256));
        if (TOLERANCE.kind === 'exact') {
          const [gp, cp] = [await twin.gpu.readParams(), await twin.cpu.readParams()];
          const first = (a: ArrayLike<number>, b: ArrayLike<number>) => {
            for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
            return -1;
          };
          expect(first(new Uint32Array(gp[0]!.buffer), new Uint32Array(cp[0]!.buffer)), 'first differing parameter').toBe(-1);
          expect(first(g.codes!, c.codes!), 'first differing code').toBe(-1);
          expect(first(new Uint32Array(g.absmax!.buffer), new Uint32Array(c.absmax!.buffer)), 'first differing absmax').toBe(-1);
        }
      } finally {
        twin.destroy();
      }
    });
    await d.queue.onSubmittedWorkDone();
    expect(uncaptured, 'uncaptured WebGPU errors').toEqual([]);
  }, 300_000);
});
