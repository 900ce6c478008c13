/**
 * The gradient pre-pass's fixed order (src/gpu/reduce-plan.ts): the same gradients give the same norm
 * whether the tensors share a ParamArena (one run) or not (a run each), and the CPU twin
 * (`gradNormStats`) follows it; models past 256Ki elements sum several vec4s per lane; a tensor past
 * the binding limit is reduced in pieces of whole blocks.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import { ParamArena, RMSProp, gradNormStats, type RMSPropConfig } from '../../src/index.js';
import { planSegments } from '../../src/gpu/plan.js';
import { planReduce, reduceLaneVec4s } from '../../src/gpu/reduce-plan.js';
import {
  MULTIPLY_ADD,
  cpuTwin,
  expectMatchesTwin,
  expectNormClose,
  gpuTest,
  randomGrads,
  randomParams,
  rng,
  upload,
  useDevice,
  withErrorScopes,
  write,
} from './harness.js';

const gpu = useDevice();

const SIZES = [1000, 3, 4099, 64, 5, 1];

function values(sizes: readonly number[], seed: number) {
  const random = rng(seed);
  return { params: sizes.map((n) => randomParams(n, random)), grads: sizes.map((n) => randomGrads(n, random)) };
}

describe('one order, whatever the layout', () => {
  gpuTest(
    'the same gradients give the same norm, bit for bit, on every step: no order left to scheduling',
    gpu,
    async (device) => {
      const { params, grads } = values([300_000, 1031, 7], 12);
      const placed = grads.map((g, i) => ({ param: upload(device, params[i]!), grad: upload(device, g) }));
      // skipNonFinite alone: the gradients never change, and the norm is computed afresh each step.
      const optimizer = new RMSProp(
        device,
        placed.map((p) => ({ param: p.param.buffer, grad: p.grad.buffer })),
        { skipNonFinite: true },
      );
      const norms: number[] = [];
      for (let s = 0; s < 5; s++) {
        optimizer.step();
        norms.push(await optimizer.lastGradNorm());
      }
      expect(new Set(norms).size, `norms ${norms.join(', ')}`).toBe(1);
      optimizer.destroy();
      placed.forEach((p) => { p.param.buffer.destroy(); p.grad.buffer.destroy(); });
    },
  );

  gpuTest(
    'an arena (one run) and separate buffers (a run each) give the twin\'s norm and step',
    gpu,
    async (device) => {
      const { params, grads } = values(SIZES, 11);
      const options: RMSPropConfig = { clipGradNorm: 0.5, skipNonFinite: true };
      const arena = new ParamArena(device, SIZES.map((size, i) => ({ name: `t${i}`, size })), 'test.arena');
      arena.tensors.forEach((t, i) => {
        write(device, arena.params, t.offset, params[i]!);
        write(device, arena.grads, t.offset, grads[i]!);
      });
      const inArena = new RMSProp(device, arena.specs(), options);
      const placed = SIZES.map((_, i) => ({ param: upload(device, params[i]!), grad: upload(device, grads[i]!) }));
      const separate = new RMSProp(
        device,
        placed.map((p, i) => ({ name: `t${i}`, param: p.param.buffer, grad: p.grad.buffer })),
        options,
      );
      const twin = cpuTwin(
        SIZES.map((_, i) => ({ name: `t${i}`, param: params[i]!.slice(), grad: grads[i]! })),
        options,
      );
      inArena.step();
      separate.step();
      twin.step();
      // the twin's norm is gradNormStats'
      expect(await twin.lastGradNorm()).toBe(gradNormStats(grads, 0.5, MULTIPLY_ADD).norm);
      await expectNormClose(inArena, twin, 'arena norm');
      await expectNormClose(separate, twin, 'separate norm');
      await expectMatchesTwin(inArena, twin, 'arena');
      await expectMatchesTwin(separate, twin, 'separate buffers');
      inArena.destroy();
      separate.destroy();
      arena.destroy();
      placed.forEach((p) => { p.param.buffer.destroy(); p.grad.buffer.destroy(); });
    },
  );

  gpuTest(
    'past 256Ki elements each lane sums several vec4s (laneVec4s 2): the norm and the step are the twin\'s',
    gpu,
    async (device) => {
      const sizes = [300_000, 3, 100_001];
      expect(reduceLaneVec4s(sizes)).toBe(2);
      const { params, grads } = values(sizes, 13);
      const placed = sizes.map((_, i) => ({ param: upload(device, params[i]!), grad: upload(device, grads[i]!) }));
      const options: RMSPropConfig = { clipGradNorm: 1, momentum: 0.9 };
      const optimizer = new RMSProp(
        device,
        placed.map((p, i) => ({ name: `t${i}`, param: p.param.buffer, grad: p.grad.buffer })),
        options,
      );
      const twin = cpuTwin(
        sizes.map((_, i) => ({ name: `t${i}`, param: params[i]!.slice(), grad: grads[i]! })),
        options,
      );
      optimizer.step();
      twin.step();
      await expectNormClose(optimizer, twin, 'norm');
      await expectMatchesTwin(optimizer, twin, 'after one step');
      optimizer.destroy();
      placed.forEach((p) => { p.param.buffer.destroy(); p.grad.buffer.destroy(); });
    },
  );
});

describe('a gradient past the binding limit (default limits: 128 MiB)', () => {
  let device: GPUDevice | undefined;
  beforeAll(async () => {
    device = (await requestNodeDevice({
      defaultLimits: true,
      label: 'webgpu-rmsprop pre-pass tests (default limits)',
    })).device;
  });
  afterAll(() => device?.destroy());

  test('40,000,003 elements: the pre-pass runs in two pieces of whole blocks; norm and step as the twin', async () => {
    const d = device!;
    const size = 40_000_003;
    const limits = {
      maxBindingBytes: Math.min(d.limits.maxStorageBufferBindingSize, d.limits.maxBufferSize),
      maxBlocksPerRun: 65535 ** 2,
    };
    const grad = new Float32Array(size);
    const pool = randomGrads(65_537, rng(17));
    for (let i = 0, j = 0; i < size; i++, j = (j + 40_009) % pool.length) grad[i] = pool[j]!;
    const param = new Float32Array(size).fill(0.5);
    await withErrorScopes(d, async () => {
      const p = upload(d, param), g = upload(d, grad);
      const optimizer = new RMSProp(
        d,
        [{ name: 'big', param: p.buffer, grad: g.buffer }],
        { clipGradNorm: 1, skipNonFinite: true },
      );
      const plan = planReduce(
        planSegments([{
          name: 'big',
          index: 0,
          group: 0,
          size,
          param: { buffer: p.buffer, offset: 0, size: size * 4 },
          grad: { buffer: g.buffer, offset: 0, size: size * 4 },
        }]),
        [4],
        limits,
      );
      expect(plan.runs.length).toBe(2);
      expect(plan.laneVec4s).toBe(reduceLaneVec4s([size]));
      const twin = cpuTwin([{ name: 'big', param: param.slice(), grad }], { clipGradNorm: 1, skipNonFinite: true });
      optimizer.step();
      twin.step();
      await expectNormClose(optimizer, twin, 'norm');
      await expectMatchesTwin(optimizer, twin, 'after one step');
      optimizer.destroy();
      p.buffer.destroy();
      g.buffer.destroy();
    });
  }, 120_000);
});
