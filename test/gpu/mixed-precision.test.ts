/**
 * Mixed precision on the GPU against the CPU twin: 16-bit gradients (gradDtype 'f16' / 'bf16', two
 * per u32, decoded exactly), f32 parameters (the master weights) and state, and a loss scale the
 * gradients are divided by first; with the pre-pass (clipping, skipping a step whose unscaled
 * gradients are not finite) reading the same 16-bit buffers.
 */
import { describe, expect } from 'vitest';
import { encodeHalves, ParamArena, RMSProp, ReferenceRMSProp, type RMSPropOptions } from '../../src/index.js';
import { STORAGE_USAGE, cpuTwin, expectBitExact, expectMatchesTwin, expectNormClose, gpuTest, randomGrads, randomParams, rng, upload, useDevice } from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

/** Even sizes here; odd ones are covered by half-params.test.ts: a tail of 2, a lone tail, a vec4 multiple, several workgroups. */
const SIZES = [1030, 2, 64, 5000];

interface HalfTensor {
  readonly name: string;
  readonly param: GPUBuffer;
  readonly grad: GPUBuffer;
  readonly cpuParam: Float32Array;
  readonly cpuGrad: Uint16Array;
}

/** A GPU optimizer and its twin over f32 parameters and 16-bit gradients. */
function halfTwin(device: GPUDevice, dtype: 'f16' | 'bf16', options: Partial<RMSPropOptions>, seed: number) {
  const random = rng(seed);
  const tensors: HalfTensor[] = SIZES.map((n, i) => {
    const values = randomParams(n, random);
    return {
      name: `t${i}`,
      param: upload(device, values, { label: `test.param[${i}]` }).buffer,
      grad: device.createBuffer({ label: `test.grad16[${i}]`, size: n * 2, usage: STORAGE_USAGE }),
      cpuParam: values.slice(),
      cpuGrad: new Uint16Array(n),
    };
  });
  const all = { ...options, gradDtype: dtype };
  const opt = new RMSProp(device, tensors.map((t) => ({ name: t.name, param: t.param, grad: t.grad })), all);
  const cpu = cpuTwin(tensors.map((t) => ({ name: t.name, param: t.cpuParam, grad: t.cpuGrad })), all);
  return {
    opt, cpu, tensors, random,
    /** Writes `grads[i]` (f32 values, encoded to 16 bits) for tensor i, or fresh random ones times `scale`. */
    setGrads(scale = 1, edit?: (halves: Uint16Array[]) => void) {
      const halves = tensors.map((t) => encodeHalves(randomGrads(t.cpuParam.length, random).map((x) => x * scale), dtype));
      edit?.(halves);
      tensors.forEach((t, i) => {
        const h = halves[i]!;
        t.cpuGrad.set(h);
        device.queue.writeBuffer(t.grad, 0, h.buffer as ArrayBuffer, h.byteOffset, h.byteLength);
      });
    },
    /** Parameters and every state slot at the adapter's tolerance, and the same skip count. */
    async expectEqual(what: string) {
      await expectMatchesTwin(opt, cpu, what);
      const [a, b] = [await opt.stateDict(), await cpu.stateDict()];
      expect(a.skippedSteps).toBe(b.skippedSteps);
    },
    destroy() {
      opt.destroy();
      tensors.forEach((t) => { t.param.destroy(); t.grad.destroy(); });
    },
  };
}

describe('16-bit gradients', () => {
  for (const dtype of ['f16', 'bf16'] as const) {
    gpuTest(`${dtype}: every step equals the twin (centered, momentum)`, gpu, async (device) => {
      const t = halfTwin(device, dtype, { centered: true, momentum: 0.9 }, 80);
      for (let s = 0; s < 5; s++) {
        // f16: gradients up to 1e3 and some f16 subnormals (below 6.1e-5); bf16 keeps f32's range.
        t.setGrads(1, (halves) => { if (dtype === 'f16') { halves[0]![3] = 0x0001; halves[3]![4999] = 0x83ff; } });
        t.opt.step();
        t.cpu.step();
        await t.expectEqual(`step ${s}`);
      }
      t.destroy();
    });

    gpuTest(`${dtype}: loss scale, clipping and skipNonFinite read the 16-bit gradients`, gpu, async (device) => {
      // Gradients up to 1e3 times 32 stay below f16's largest finite value (65504).
      const t = halfTwin(device, dtype, { lossScale: 32, clipGradNorm: 1, skipNonFinite: true, momentum: 0.9 }, 81);
      t.setGrads(32);
      t.opt.step();
      t.cpu.step();
      await t.expectEqual('scaled step');
      await expectNormClose(t.opt, t.cpu, 'norm');
      // An overflowed gradient (the scaled backward pass ran past the 16-bit range) in the last element of the last tensor.
      const before = await t.opt.readParams();
      t.setGrads(32, (halves) => { halves[SIZES.length - 1]![SIZES[SIZES.length - 1]! - 1] = dtype === 'f16' ? 0x7c00 : 0x7f80; });
      t.opt.step();
      t.cpu.step();
      (await t.opt.readParams()).forEach((p, i) => expectBitExact(p, before[i]!, `skipped: param ${i}`));
      expect(await t.opt.skippedSteps()).toBe(1);
      t.setGrads(32);
      t.opt.step();
      t.cpu.step();
      await t.expectEqual('after the skip');
      t.destroy();
    });
  }

  gpuTest('lossScale with f32 gradients', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1031, 3], { lossScale: 1024, momentum: 0.9, clipGradNorm: 0.5 }, 82);
    await twin.run(4);
    await twin.expectState();
    twin.destroy();
  });

  gpuTest('bad 16-bit layouts are refused before any GPU work', gpu, (device) => {
    const param = upload(device, new Float32Array(6)).buffer;
    const grad12 = device.createBuffer({ label: 'test.grad12', size: 12, usage: STORAGE_USAGE });
    const grad24 = device.createBuffer({ label: 'test.grad24', size: 24, usage: STORAGE_USAGE });
    expect(() => new RMSProp(device, [{ param, grad: grad12 }], { gradDtype: 'f16' })).not.toThrow();
    expect(() => new RMSProp(device, [{ param, grad: grad24 }], { gradDtype: 'f16' })).toThrow(/with gradDtype 'f16' the gradient holds 2 bytes per f32 parameter/);
    const arena = new ParamArena(device, [{ name: 'w', size: 8 }], 'test.arena');
    expect(() => new RMSProp(device, arena.specs(), { gradDtype: 'bf16' })).toThrow(/ParamArena, whose gradients are f32/);
    expect(() => new ReferenceRMSProp([{ param: new Float32Array(2), grad: new Float32Array(2) }], { gradDtype: 'f16' })).toThrow(/must be a Uint16Array/);
    expect(() => new RMSProp(device, [{ param, grad: grad12 }], { lossScale: 0 })).toThrow(RangeError);
    arena.destroy();
    [param, grad12, grad24].forEach((b) => b.destroy());
  });
});
