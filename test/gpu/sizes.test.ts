/**
 * Tensor sizes: tails of 1 to 3 elements, sizes around the workgroup and vec4 boundaries, one past
 * 65,535 × 256 elements, and one whose body needs more than maxComputeWorkgroupsPerDimension
 * workgroups (the 2-D grid of src/gpu/plan.ts `dispatchSize`), where the device's binding limit lets
 * one chunk be that large. Every element is compared with the CPU reference after every step.
 */
import { describe, expect, test } from 'vitest';
import { dispatchSize, maxChunkElements, planChunks, stateSlots, WORKGROUP_SIZE } from '../../src/gpu/plan.js';
import { gpuTest, useDevice, withErrorScopes } from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

describe('sizes', () => {
  for (const size of [1, 3, 4, 5, 1023, 4099, 65537]) {
    for (const options of [{}, { centered: true, momentum: 0.9 }]) {
      gpuTest(`${size} elements, ${options.centered ? 'centered + momentum' : 'plain'}`, gpu, async (device) => {
        const twin = Twin.ofSizes(device, [size], options, size);
        await twin.run(4);
        await twin.expectState();
        twin.destroy();
      });
    }
  }

  gpuTest('several sizes in one optimizer (one dispatch each, tails included)', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1, 2, 3, 4, 5, 6, 7, 8, 63, 64, 65, 255, 256, 257, 1023, 1025], { momentum: 0.9 }, 17);
    await twin.run(3);
    await twin.expectState();
    twin.destroy();
  });

  // 65,535 * 256 = 16,776,960: one more element than that, centered with momentum (three state slots).
  gpuTest('16,777,217 elements (past 65,535 × 256), centered + momentum', gpu, async (device) => {
    const size = 16_777_217;
    const twin = Twin.ofSizes(device, [size], { centered: true, momentum: 0.9 }, 3);
    await twin.run(2);
    await twin.expectState();
    twin.destroy();
  }, 300_000);

  // One vec4 per invocation, 256 invocations per workgroup: a dispatch needs a 2-D grid once a
  // chunk has more than maxComputeWorkgroupsPerDimension × 256 vec4s. The size comes from this
  // device's limits: one vec4 past that many (plus a tail of 1), 268 MB per buffer at WebGPU's
  // 65,535. It must fit one binding (param, grad and the one state slot each), or the library
  // splits it into chunks that never need the grid: then the path cannot be reached on this
  // adapter, and the test says so instead of running.
  test('past maxComputeWorkgroupsPerDimension × 256 vec4s in one chunk: the body dispatches a 2-D grid of workgroups', async (ctx) => {
    const device = gpu.device;
    const maxPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    const count4 = maxPerDimension * WORKGROUP_SIZE + 1;
    const size = count4 * 4 + 1;
    const oneChunk = maxChunkElements(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize, stateSlots({ centered: false, momentum: 0 }));
    if (size > oneChunk) {
      const reason = `${size} elements do not fit one storage binding here (maxStorageBufferBindingSize ` +
        `${device.limits.maxStorageBufferBindingSize} bytes holds ${oneChunk} f32): the library splits such a tensor into chunks ` +
        `of at most ${Math.ceil(oneChunk / 4 / WORKGROUP_SIZE)} workgroups, below ${maxPerDimension}, so this adapter never dispatches a 2-D grid`;
      console.warn(`skipped: ${reason}`);
      ctx.skip(reason);
    }
    await withErrorScopes(device, async () => {
      expect(Math.ceil(count4 / WORKGROUP_SIZE)).toBeGreaterThan(maxPerDimension);
      const [x, y] = dispatchSize(count4, maxPerDimension);
      expect(y).toBeGreaterThan(1);
      expect(x * y * WORKGROUP_SIZE).toBeGreaterThanOrEqual(count4);
      expect(planChunks(size, oneChunk).length, 'one chunk, or this would not test the 2-D path').toBe(1);
      const twin = Twin.ofSizes(device, [size], {}, 5);
      await twin.run(2);
      await twin.expectState();
      twin.destroy();
    });
  }, 300_000);
});
