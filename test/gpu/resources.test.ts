/**
 * What the optimizer allocates and frees: pipelines cached per device and variant, nothing made
 * per step, and destroy() freeing only its own buffers.
 */
import { describe, expect, vi } from 'vitest';
import { RMSProp } from '../../src/index.js';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import { expectBitExact, gpuTest, randomParams, readFloats, rng, upload, useDevice, withErrorScopes, write } from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

function countCalls<T extends object>(target: T, names: (keyof T & string)[]) {
  const spies = names.map((name) => [name, vi.spyOn(target, name as never)] as const);
  return {
    counts: () => Object.fromEntries(spies.map(([name, spy]) => [name, spy.mock.calls.length])),
    results: (name: string) => spies.find(([n]) => n === name)![1].mock.results.map((r) => r.value as unknown),
    restore: () => spies.forEach(([, spy]) => spy.mockRestore()),
  };
}

const buffersOf = (device: GPUDevice, n: number, seed: number) => {
  const random = rng(seed);
  return { param: upload(device, randomParams(n, random)).buffer, grad: upload(device, randomParams(n, random)).buffer };
};

describe('pipelines are cached per device and variant', () => {
  gpuTest('a second optimizer of the same variant creates no pipeline or shader; another variant creates its own', gpu, async (device) => {
    const calls = countCalls(device, ['createComputePipeline', 'createShaderModule']);
    try {
      const a = new RMSProp(device, [buffersOf(device, 1031, 1)], { momentum: 0.9, centered: true });
      // First use of this variant in this file: the body and tail pipelines, and the device's countStep
      // (the step ring's counter), from one shader module.
      expect(calls.counts()).toEqual({ createComputePipeline: 3, createShaderModule: 1 });
      // Same variant, other hyperparameters (they live in a uniform) and other sizes.
      const b = new RMSProp(device, [buffersOf(device, 5, 2), buffersOf(device, 64, 3)], { momentum: 0.5, centered: true, lr: 0.1, alpha: 0.9, eps: 1e-6 });
      expect(calls.counts()).toEqual({ createComputePipeline: 3, createShaderModule: 1 });
      // Another variant: its own two pipelines, the same module.
      const c = new RMSProp(device, [buffersOf(device, 7, 4)], { momentum: 0.9, centered: true, epsMode: 'inside' });
      expect(calls.counts()).toEqual({ createComputePipeline: 5, createShaderModule: 1 });
      const labels = calls.results('createComputePipeline').map((p) => (p as GPUComputePipeline).label);
      expect(labels).toEqual([
        'RMSProp.pipeline[centered+momentum].stepBody', 'RMSProp.pipeline[centered+momentum].stepTail',
        'RMSProp.pipeline.countStep',
        'RMSProp.pipeline[centered+momentum+epsInside].stepBody', 'RMSProp.pipeline[centered+momentum+epsInside].stepTail',
      ]);
      for (const o of [a, b, c]) { o.step(); o.destroy(); }
    } finally {
      calls.restore();
    }
  });

  gpuTest('another device gets pipelines of its own (a pipeline cannot cross devices)', gpu, async () => {
    const { device: other } = await requestNodeDevice({ label: 'second device' });
    try {
      await withErrorScopes(other, async () => {
        const calls = countCalls(other, ['createComputePipeline']);
        try {
          const twin = Twin.ofSizes(other, [1031], { momentum: 0.9, centered: true }, 3);
          expect(calls.counts()).toEqual({ createComputePipeline: 3 }); // body, tail, countStep
          await twin.run(2);
          twin.destroy();
        } finally {
          calls.restore();
        }
      });
    } finally {
      other.destroy();
    }
  });
});

describe('step() allocates nothing', () => {
  gpuTest('several steps, with and without an encoder, lr changed between some: no buffer, bind group or pipeline; a write only for new values', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1031, 3, 65537], { momentum: 0.9, centered: true }, 9);
    twin.setGrads();
    const calls = countCalls(device, ['createBuffer', 'createBindGroup', 'createBindGroupLayout', 'createPipelineLayout', 'createComputePipeline', 'createShaderModule']);
    const writes = countCalls(device.queue, ['writeBuffer']);
    try {
      twin.step(); // the first step writes its values into the slot of the optimizer's own submissions
      expect(writes.counts()).toEqual({ writeBuffer: 1 });
      twin.step();
      const encoder = device.createCommandEncoder();
      twin.step(encoder); // the first step into a caller's encoder takes a slot of the ring and writes it
      expect(writes.counts()).toEqual({ writeBuffer: 2 });
      twin.step(encoder); // the same values: the same slot, nothing written
      device.queue.submit([encoder.finish()]);
      expect(writes.counts()).toEqual({ writeBuffer: 2 });
      twin.lr = 0.003;
      twin.step();
      twin.step();
      expect(writes.counts()).toEqual({ writeBuffer: 3 });
      expect(calls.counts()).toEqual({
        createBuffer: 0, createBindGroup: 0, createBindGroupLayout: 0, createPipelineLayout: 0, createComputePipeline: 0, createShaderModule: 0,
      });
    } finally {
      calls.restore();
      writes.restore();
    }
    await twin.expectParams();
    twin.destroy();
  });
});

describe('destroy()', () => {
  gpuTest('frees the optimizer\'s own buffers once, even when called twice, and none of the caller\'s', gpu, async (device) => {
    const random = rng(13);
    const tensors = [1031, 3].map((n) => ({ values: randomParams(n, random), n }));
    const caller = tensors.map(({ values, n }) => ({ param: upload(device, values).buffer, grad: upload(device, new Float32Array(n)).buffer }));
    const created = countCalls(device, ['createBuffer']);
    let optimizer: RMSProp, own: GPUBuffer[];
    try {
      optimizer = new RMSProp(device, caller, { momentum: 0.9, initialScale: 1 });
      own = created.results('createBuffer') as GPUBuffer[];
    } finally {
      created.restore();
    }
    // A state buffer per tensor, the control buffer the shader binds, the chunks' geometry, and the step
    // ring's first page (its values, its counters and their readback buffer).
    expect(own.map((b) => b.label)).toEqual([
      expect.stringMatching(/^RMSProp\.state\[0\]/), expect.stringMatching(/^RMSProp\.state\[1\]/), 'RMSProp.control', 'RMSProp.geometry',
      'RMSProp.stepValues.page[0].values', 'RMSProp.stepValues.page[0].ran', 'RMSProp.stepValues.page[0].ranReadback',
    ]);
    optimizer.step();
    await device.queue.onSubmittedWorkDone();
    const ownDestroys = own.map((b) => vi.spyOn(b, 'destroy'));
    const callerDestroys = caller.flatMap((c) => [vi.spyOn(c.param, 'destroy'), vi.spyOn(c.grad, 'destroy')]);
    optimizer.destroy();
    optimizer.destroy();
    ownDestroys.forEach((spy) => expect(spy).toHaveBeenCalledTimes(1));
    callerDestroys.forEach((spy) => expect(spy).not.toHaveBeenCalled());
    [...ownDestroys, ...callerDestroys].forEach((spy) => spy.mockRestore());

    // The caller's buffers still work: written, read back, and trained by a new optimizer.
    for (const [i, { n }] of tensors.entries()) {
      const fresh = Float32Array.from({ length: n }, (_, k) => k / 8 - 1);
      write(device, caller[i]!.param, 0, fresh);
      expectBitExact(await readFloats(device, caller[i]!.param), fresh, `caller's param ${i} after destroy()`);
    }
    const again = new RMSProp(device, caller, { momentum: 0.9 });
    again.step();
    const after = await again.readParams();
    expect(after.map((p) => p.length)).toEqual([1031, 3]);
    again.destroy();
    caller.forEach((c) => { c.param.destroy(); c.grad.destroy(); });
  });
});
