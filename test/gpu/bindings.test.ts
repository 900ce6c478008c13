/**
 * Where the parameters live and how steps are recorded: GPUBufferBindings at offsets inside larger
 * buffers (the bytes around them untouched), several tensors packed in one buffer, steps recorded
 * into the caller's encoder between its own passes, and lr changed between steps.
 */
import { describe, expect, vi } from 'vitest';
import { readBytes, expectBitExact, expectClose, gpuTest, randomParams, rng, upload, useDevice, type Placed } from './harness.js';
import { Twin, type TwinTensor } from './twin.js';
import type { RMSPropOptions } from '../../src/index.js';

const gpu = useDevice();

/** A u32 pattern (a NaN) filling every byte of the test buffers that no tensor covers. */
const SENTINEL = 0x7fc0dead;

/**
 * Tensors of `sizes` packed into one parameter buffer at `paramOffsets` and one gradient buffer at
 * `gradOffsets` (bytes), each buffer `bufferSize` bytes, the rest of both filled with SENTINEL.
 */
function packed(device: GPUDevice, sizes: number[], paramOffsets: number[], gradOffsets: number[], bufferSize: number, options: Partial<RMSPropOptions>, seed: number): Twin {
  const random = rng(seed);
  const values = sizes.map((n) => randomParams(n, random));
  const image = (offsets: number[], data: Float32Array[]) => {
    const all = new Uint32Array(bufferSize / 4).fill(SENTINEL);
    data.forEach((d, i) => new Float32Array(all.buffer, offsets[i], d.length).set(d));
    return new Float32Array(all.buffer);
  };
  const params = upload(device, image(paramOffsets, values), { label: 'test.packedParams' }).buffer;
  const grads = upload(device, image(gradOffsets, sizes.map((n) => new Float32Array(n))), { label: 'test.packedGrads' }).buffer;
  const at = (buffer: GPUBuffer, offset: number, n: number): Placed => ({ buffer, binding: { buffer, offset, size: n * 4 } });
  const tensors = sizes.map((n, i): TwinTensor => ({
    name: `packed${i}`,
    size: n,
    param: at(params, paramOffsets[i]!, n),
    grad: at(grads, gradOffsets[i]!, n),
    cpuParam: values[i]!.slice(),
    cpuGrad: new Float32Array(n),
  }));
  return new Twin(device, tensors, options, seed);
}

/** Asserts every u32 of `buffer` outside the tensors' ranges still holds SENTINEL, and inside holds `expected`. */
async function expectLayout(device: GPUDevice, buffer: GPUBuffer, ranges: { offset: number; values: Float32Array }[]): Promise<void> {
  const actual = new Uint32Array(await readBytes(device, buffer));
  const expected = new Uint32Array(actual.length).fill(SENTINEL);
  for (const r of ranges) new Float32Array(expected.buffer, r.offset, r.values.length).set(r.values);
  expectBitExact(actual, expected, `buffer '${buffer.label}'`);
}

describe('parameters and gradients at offsets inside larger buffers', () => {
  for (const options of [{}, { centered: true, momentum: 0.9, weightDecay: 0.01 }]) {
    gpuTest(`three tensors packed at 256, 4608 and 5120 in one buffer, grads at 512, 8192 and 768 in another${options.centered ? ' (centered + momentum)' : ''}`, gpu, async (device) => {
      const sizes = [1027, 5, 64];
      const paramOffsets = [256, 4608, 5120], gradOffsets = [512, 8192, 768 + 4096];
      const twin = packed(device, sizes, paramOffsets, gradOffsets, 16384, options, 31);
      await twin.run(4);
      await twin.expectState();
      // The bytes before, between and after the ranges are untouched; inside, the trained values.
      const params = await twin.gpu.readParams();
      await expectLayout(device, twin.tensors[0]!.param.buffer, params.map((values, i) => ({ offset: paramOffsets[i]!, values })));
      // The gradients are only read.
      await expectLayout(device, twin.tensors[0]!.grad.buffer, twin.tensors.map((t, i) => ({ offset: gradOffsets[i]!, values: t.cpuGrad })));
      twin.destroy();
    });
  }

  gpuTest('a binding with an explicit size ends before the end of its buffer; the rest is untouched', gpu, async (device) => {
    // 4099 elements at 512 in a buffer with 1 KiB of sentinels after the range.
    const twin = packed(device, [4099], [512], [256], 512 + 4099 * 4 + 1024, { momentum: 0.9 }, 5);
    await twin.run(3);
    const [values] = await twin.gpu.readParams();
    await expectLayout(device, twin.tensors[0]!.param.buffer, [{ offset: 512, values: values! }]);
    twin.destroy();
  });

  // Fails today (a library bug): the shader binds grad read-only and param read-write, and one buffer
  // in both is a usage conflict within one dispatch ("includes writable usage and another usage in
  // the same synchronization scope"), though the ranges are apart and the constructor accepts it.
  // Fix: declare grad and gradTail `read_write` in shaders/rmsprop.wgsl (two writable bindings of
  // one buffer are valid when they do not overlap), or reject param.buffer === grad.buffer up front.
  gpuTest('a parameter and its gradient in the same buffer, apart', gpu, async (device) => {
    const random = rng(9);
    const values = randomParams(1027, random);
    const all = upload(device, values, { bufferSize: 16384, label: 'test.arena' });
    const buffer = all.buffer;
    const tensors: TwinTensor[] = [{
      name: 'arena', size: 1027,
      param: { buffer, binding: { buffer, offset: 0, size: 1027 * 4 } },
      grad: { buffer, binding: { buffer, offset: 8192, size: 1027 * 4 } },
      cpuParam: values.slice(), cpuGrad: new Float32Array(1027),
    }];
    const twin = new Twin(device, tensors, {}, 9);
    for (let s = 0; s < 2; s++) {
      twin.setGrads();
      device.pushErrorScope('validation');
      twin.step();
      const error = await device.popErrorScope();
      expect(error?.message ?? null, 'validation error of step()').toBeNull();
      await twin.expectParams();
    }
    twin.destroy();
  });
});

/** A caller's pass that writes gradients: g[i] = (i % 97 - 48) * SCALE, exact in f32, zero every 97th. */
const GRAD_SHADER = /* wgsl */ `
override SCALE: f32 = 1.0;
@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= arrayLength(&g)) { return; }
  g[id.x] = (f32(id.x % 97u) - 48.0) * SCALE;
}`;

function gradsOf(n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => ((i % 97) - 48) * scale);
}

describe('step(encoder) between the caller\'s passes', () => {
  gpuTest('grad pass, step, copy, grad pass, step, copy: one submit; both steps match the reference', gpu, async (device) => {
    const n = 1029;
    const twin = Twin.ofSizes(device, [n], { momentum: 0.9, centered: true }, 41);
    const [t] = twin.tensors;
    const module = device.createShaderModule({ label: 'test.gradShader', code: GRAD_SHADER });
    const gradPass = (encoder: GPUCommandEncoder, scale: number) => {
      const pipeline = device.createComputePipeline({ label: `test.grads(${scale})`, layout: 'auto', compute: { module, entryPoint: 'main', constants: { SCALE: scale } } });
      const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: t!.grad.binding }] });
      const pass = encoder.beginComputePass({ label: 'test.gradPass' });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(Math.ceil(n / 64));
      pass.end();
    };
    const snapshots = [0, 1].map((i) => device.createBuffer({ label: `test.snapshot${i}`, size: n * 4, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }));
    const submit = vi.spyOn(device.queue, 'submit');
    const encoder = device.createCommandEncoder({ label: 'test.caller' });
    gradPass(encoder, 0.125);
    twin.gpu.step(encoder);
    encoder.copyBufferToBuffer(t!.param.buffer, 0, snapshots[0]!, 0, n * 4);
    gradPass(encoder, -2.5);
    twin.gpu.step(encoder);
    encoder.copyBufferToBuffer(t!.param.buffer, 0, snapshots[1]!, 0, n * 4);
    expect(submit).not.toHaveBeenCalled(); // recorded only
    device.queue.submit([encoder.finish()]);
    submit.mockRestore();

    const cpuAfter: { param: Float32Array; bound?: Float64Array }[] = [];
    for (const scale of [0.125, -2.5]) {
      twin.setGrads([gradsOf(n, scale)]);
      twin.cpuStep();
      cpuAfter.push({ param: t!.cpuParam.slice(), bound: (await twin.cpu.bounds())?.params[0] });
    }
    for (const [i, snapshot] of snapshots.entries()) {
      expectClose(new Float32Array(await readBytes(device, snapshot)), cpuAfter[i]!.param, `after step ${i + 1} (snapshot)`, cpuAfter[i]!.bound);
    }
    await twin.expectParams();
    await twin.expectState();
    expect(twin.gpu.stepCount).toBe(2);
    snapshots.forEach((b) => b.destroy());
    twin.destroy();
  });

  gpuTest('step() with no encoder submits one command buffer of its own per step', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1031, 3], { momentum: 0.9 }, 43);
    const submit = vi.spyOn(device.queue, 'submit');
    try {
      for (let s = 0; s < 3; s++) {
        twin.setGrads();
        twin.step();
        expect(submit).toHaveBeenCalledTimes(s + 1);
      }
    } finally {
      submit.mockRestore();
    }
    await twin.expectParams();
    twin.destroy();
  });
});

describe('lr between steps', () => {
  for (const lrInMomentum of [false, true]) {
    gpuTest(`lr changed before each step, with momentum (lrInMomentum ${lrInMomentum}), matches the reference`, gpu, async (device) => {
      const twin = Twin.ofSizes(device, [1031, 2], { momentum: 0.9, lrInMomentum }, 47);
      for (const lr of [0.01, 0.003, 0.05, 0, 1e-4]) {
        twin.lr = lr;
        expect(twin.gpu.lr).toBe(lr);
        twin.setGrads();
        twin.step();
        await twin.expectParams(`lr ${lr}`);
      }
      const state = await twin.expectState();
      expect(state.groups[0]!.options.lr).toBe(1e-4);
      twin.destroy();
    });
  }

  gpuTest('steps recorded into one encoder each run with the lr they were recorded with', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1031, 6], { momentum: 0.9 }, 53);
    twin.setGrads();
    const encoder = device.createCommandEncoder({ label: 'test.one-encoder' });
    for (const lr of [0.01, 0.05, 0.05, 0.002]) {
      twin.lr = lr;
      twin.step(encoder);
    }
    device.queue.submit([encoder.finish()]);
    await twin.expectParams('four steps, three lrs, one encoder');
    twin.destroy();
  });

  gpuTest('encoders submitted out of order still run each step with its own lr', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1031], { momentum: 0.9 }, 59);
    twin.setGrads();
    const first = device.createCommandEncoder({ label: 'test.first' });
    twin.gpu.lr = 0.002;
    twin.gpu.step(first);
    const second = device.createCommandEncoder({ label: 'test.second' });
    twin.gpu.lr = 0.2;
    twin.gpu.step(second);
    device.queue.submit([second.finish()]); // the lr 0.2 step runs first,
    device.queue.submit([first.finish()]); // then the lr 0.002 one.
    twin.cpu.lr = 0.2;
    twin.cpuStep();
    twin.cpu.lr = 0.002;
    twin.cpuStep();
    await twin.expectParams('lr 0.2 then lr 0.002');
    twin.destroy();
  });

  gpuTest('200 steps with a new lr each, recorded into one encoder, each run with its own lr', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [37], {}, 61);
    twin.setGrads();
    const encoder = device.createCommandEncoder({ label: 'test.ring' });
    const lrAt = (k: number) => 0.001 * (1 + (k % 7));
    for (let k = 0; k < 200; k++) {
      twin.lr = lrAt(k);
      twin.step(encoder); // more than one page of the ring (64 slots): it grows, nothing is overwritten
    }
    device.queue.submit([encoder.finish()]);
    await twin.expectParams('200 steps, 7 lrs in turn, one encoder');
    // A new encoder takes steps again.
    const next = device.createCommandEncoder({ label: 'test.ring.next' });
    twin.lr = 0.5;
    twin.step(next);
    device.queue.submit([next.finish()]);
    await twin.expectParams('a step in a new encoder');
    twin.destroy();
  });
});
