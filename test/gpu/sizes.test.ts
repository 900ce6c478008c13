/**
 * Tensor sizes: tails of 1 to 3 elements, sizes around the workgroup and vec4 boundaries, one past
 * 65,535 × 256 elements, and one whose body needs more than 65,535 workgroups (the 2-D grid of
 * src/plan.ts `dispatchSize`). Every element is compared with the CPU reference after every step.
 */
import { describe, expect } from 'vitest';
import { dispatchSize, WORKGROUP_SIZE } from '../../src/plan.js';
import { gpuTest, useDevice } from './harness.js';
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

  // One vec4 per invocation, 256 invocations per workgroup: past 65,535 workgroups from 67,107,844
  // elements on. 2^26 + 5 elements: a body of 16,777,217 vec4s (65,537 workgroups: a 2-D grid)
  // and a tail of 1. 268 MB per buffer; SwiftShader's 1 GiB binding limit keeps it one chunk.
  gpuTest('67,108,869 elements: the body dispatches a 2-D grid of workgroups', gpu, async (device) => {
    const size = 2 ** 26 + 5;
    const count4 = Math.floor(size / 4);
    const maxPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    expect(Math.ceil(count4 / WORKGROUP_SIZE)).toBeGreaterThan(maxPerDimension);
    const [x, y] = dispatchSize(count4, maxPerDimension);
    expect(y).toBeGreaterThan(1);
    expect(x * y * WORKGROUP_SIZE).toBeGreaterThanOrEqual(count4);
    // One chunk, or this would not test the 2-D path (state, param and grad each fit one binding).
    expect(size * 4).toBeLessThanOrEqual(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize));

    const twin = Twin.ofSizes(device, [size], {}, 5);
    await twin.run(2);
    await twin.expectState();
    twin.destroy();
  }, 300_000);
});
