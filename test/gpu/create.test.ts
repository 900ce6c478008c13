/**
 * `await RMSProp.create(...)`: the constructor's optimizer with its pipelines compiled by
 * createComputePipelineAsync, sharing one cache with the constructor, rejecting as it throws.
 */
import { describe, expect, vi } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import { RMSProp } from '../../src/index.js';
import { Twin } from './twin.js';
import {
  cpuTwin,
  expectMatchesTwin,
  gpuTest,
  randomGrads,
  randomParams,
  rng,
  upload,
  useDevice,
  withErrorScopes,
} from './harness.js';

const gpu = useDevice();

/** A device of its own, so that its pipeline cache starts empty. */
async function withFreshDevice(body: (device: GPUDevice) => Promise<void>): Promise<void> {
  const { device } = await requestNodeDevice({ label: 'webgpu-rmsprop create() tests' });
  try {
    await withErrorScopes(device, () => body(device));
  } finally {
    device.destroy();
  }
}

function specs(device: GPUDevice, sizes: readonly number[], seed: number) {
  const random = rng(seed);
  return sizes.map((n, i) => ({
    name: `t${i}`,
    param: upload(device, randomParams(n, random)).buffer,
    grad: upload(device, randomGrads(n, random)).buffer,
  }));
}

describe('RMSProp.create', () => {
  gpuTest(
    'compiles every pipeline asynchronously (the pre-pass\'s too); the constructor then compiles nothing',
    gpu,
    async () => {
      await withFreshDevice(async (device) => {
        const sync = vi.spyOn(device, 'createComputePipeline');
        const async_ = vi.spyOn(device, 'createComputePipelineAsync');
        try {
          const options = { momentum: 0.9, clipGradNorm: 1, skipNonFinite: true };
          const created = await RMSProp.create(device, specs(device, [1031, 3], 3), options);
          expect(async_).toHaveBeenCalledTimes(5); // body, tail, countStep, partialNorms, finish
          expect(sync).not.toHaveBeenCalled();
          expect(created.dispatchesPerStep.dispatches).toBe(2 + 1 + 1 + 2 + 1);
          const constructed = new RMSProp(device, specs(device, [7], 4), options);
          expect(sync).not.toHaveBeenCalled(); // one cache for both paths
          // Another variant by the constructor compiles synchronously; create() of it then compiles nothing.
          const other = { centered: true, epsMode: 'inside' as const };
          new RMSProp(device, specs(device, [5], 5), other).destroy();
          expect(sync).toHaveBeenCalledTimes(2);
          (await RMSProp.create(device, specs(device, [9], 6), other)).destroy();
          expect(async_).toHaveBeenCalledTimes(5);
          constructed.destroy();
          created.destroy();
        } finally {
          sync.mockRestore();
          async_.mockRestore();
        }
      });
    },
  );

  gpuTest('the created optimizer is the constructor\'s: it trains as the twin', gpu, async (device) => {
    const options = { centered: true, momentum: 0.9, clipGradNorm: 0.5 };
    const twin = Twin.ofSizes(device, [1031, 3, 64], options, 2);
    const created = await RMSProp.create(
      device,
      twin.tensors.map((t) => ({ name: t.name, param: t.param.buffer, grad: t.grad.buffer })),
      options,
    );
    twin.gpu.destroy(); // the twin's GPU side is replaced by the created optimizer
    for (let s = 0; s < 3; s++) {
      twin.setGrads();
      created.step();
      twin.cpuStep();
      await expectMatchesTwin(created, twin.cpu, `step ${s}`);
    }
    created.destroy();
    twin.destroy();
  });

  gpuTest('concurrent creates of one variant compile it once; each trains as the CPU reference', gpu, async () => {
    await withFreshDevice(async (device) => {
      const async_ = vi.spyOn(device, 'createComputePipelineAsync');
      try {
        const options = { momentum: 0.5, weightDecay: 0.01 };
        const random = rng(6);
        const tensors = [0, 1].map(() => ({ param: randomParams(1031, random), grad: randomGrads(1031, random) }));
        const made = await Promise.all(tensors.map((t) => RMSProp.create(
          device,
          [{ param: upload(device, t.param).buffer, grad: upload(device, t.grad).buffer }],
          options,
        )));
        expect(async_).toHaveBeenCalledTimes(3); // one body, one tail and countStep for both
        for (const [i, t] of tensors.entries()) {
          const twin = cpuTwin([{ param: t.param.slice(), grad: t.grad }], options);
          made[i]!.step();
          twin.step();
          await expectMatchesTwin(made[i]!, twin, `created optimizer ${i}`);
          made[i]!.destroy();
        }
      } finally {
        async_.mockRestore();
      }
    });
  });

  gpuTest('bad input rejects with the constructor\'s error, before any GPU work', gpu, async (device) => {
    const good = specs(device, [8], 9);
    const work = vi.spyOn(device, 'createBuffer');
    const compiles = vi.spyOn(device, 'createComputePipelineAsync');
    try {
      const promise = RMSProp.create(device, good, { lr: -1 });
      await expect(promise).rejects.toThrow(RangeError);
      await expect(RMSProp.create(device, [], {})).rejects.toThrow(/params is empty/);
      await expect(RMSProp.create({} as GPUDevice, good)).rejects.toThrow(/device must be a GPUDevice/);
      expect(() => new RMSProp(device, good, { lr: -1 })).toThrow(RangeError);
      expect(work).not.toHaveBeenCalled();
      expect(compiles).not.toHaveBeenCalled();
    } finally {
      work.mockRestore();
      compiles.mockRestore();
    }
  });
});
