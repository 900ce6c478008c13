/**
 * The gradient pre-pass's fixed order (src/gpu/reduce-plan.ts, sized from the adapter): the GPU's norm
 * is within the bound docs/tolerance.md derives (`normBound`) of the CPU twin's for the adapter's plan,
 * and a reduction that drops or repeats a vector is far outside it; the same gradients give the
 * twin's norm whether the tensors share a ParamArena (one run) or not (a run each); larger models sum
 * several vec4s per lane; a tensor past the binding limit is reduced in pieces of whole blocks; a sum
 * of squares that would overflow f32, and NaN or Infinity, give the norm and factor the rule states,
 * decided on bits (shaders/grad-norm.wgsl `finish`).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import { ParamArena, RMSProp, gradNormStats, reduceTargetPartials, type RMSPropConfig } from '../../src/index.js';
import { planSegments } from '../../src/gpu/plan.js';
import {
  REDUCE_TARGET_PARTIALS, REDUCE_WORKGROUP_SIZE, forceReduceTarget, planReduce, reduceLaneVec4s, usesLanePartials,
} from '../../src/gpu/reduce-plan.js';
import { CheckedReference } from '../../demo/check/checked-reference.js';
import { normBound } from '../../demo/check/bound.js';
import {
  MULTIPLY_ADD,
  REDUCE_PARTIALS,
  TOLERANCE,
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

/**
 * Gradients whose every tensor's tail and every block's first and last vec4 (for a plan of `lane`
 * vec4s a lane) hold large values: a reduction that drops or repeats any of them moves the norm by
 * far more than the bound.
 */
function edgeWeighted(sizes: readonly number[], lane: number, seed: number): Float32Array[] {
  const random = rng(seed);
  const block = REDUCE_WORKGROUP_SIZE * lane; // vec4s a block
  return sizes.map((n) => {
    const g = Float32Array.from({ length: n }, () => 2 * random() - 1);
    const vec4s = Math.ceil(n / 4);
    for (let first = 0; first < vec4s; first += block) {
      for (const j of [first, Math.min(first + block, vec4s) - 1]) {
        for (let k = 4 * j; k < Math.min(4 * j + 4, n); k++) g[k] = 30 * (g[k]! < 0 ? -1 : 1);
      }
    }
    return g;
  });
}

/** The twin's norm over `grads` with each tensor's vec4s transformed by `edit` (a broken reduction). */
function brokenNorm(grads: readonly Float32Array[], edit: (g: Float32Array) => Float32Array): number {
  return gradNormStats(grads.map((g) => edit(g)), 0, MULTIPLY_ADD, 1, REDUCE_PARTIALS).norm;
}

describe('one order, whatever the layout', () => {
  gpuTest(
    'the GPU\'s norm is within normBound (docs/tolerance.md) of the twin\'s for this adapter\'s plan; ' +
      'a reduction that drops or repeats a vec4 is not',
    gpu,
    async (device) => {
      expect(REDUCE_PARTIALS, 'the harness\'s twins follow this adapter\'s plan').toBe(reduceTargetPartials(device));
      // Enough elements for 3 vec4s a lane (several rounds of the lane loop), blocks that end mid-tensor.
      const limit = 1024 * REDUCE_PARTIALS;
      const sizes = [Math.ceil(1.7 * limit) + 1, 1031, 7, Math.ceil(0.4 * limit) + 2];
      const lane = reduceLaneVec4s(sizes, REDUCE_PARTIALS);
      expect(lane).toBe(3);
      const grads = edgeWeighted(sizes, lane, 12);
      const params = sizes.map((n) => randomParams(n, rng(n)));
      const placed = grads.map((g, i) => ({ param: upload(device, params[i]!), grad: upload(device, g) }));
      // skipNonFinite alone: the gradients never change, and the norm is computed afresh each step.
      const optimizer = new RMSProp(
        device,
        placed.map((p) => ({ param: p.param.buffer, grad: p.grad.buffer })),
        { skipNonFinite: true },
      );
      const cpu = gradNormStats(grads, 0, MULTIPLY_ADD, 1, REDUCE_PARTIALS);
      const { normError } = normBound(grads, 0, 1, cpu.norm, cpu.scale, REDUCE_PARTIALS);
      expect(normError, 'the bound is not vacuous').toBeLessThan(1e-4 * cpu.norm);
      for (let s = 0; s < 3; s++) {
        optimizer.step();
        const norm = await optimizer.lastGradNorm();
        expect(Math.abs(norm - cpu.norm), `step ${s}: GPU ${norm}, CPU ${cpu.norm}, bound ${normError}`)
          .toBeLessThanOrEqual(normError);
        if (TOLERANCE.kind === 'exact') expect(norm, 'exact on this adapter (measured)').toBe(cpu.norm);
      }
      // Broken reductions, as a shader bug would make them: each lands outside the bound.
      const block = REDUCE_WORKGROUP_SIZE * lane;
      const broken: [string, (g: Float32Array) => Float32Array][] = [
        ['the tail dropped', (g) => g.length % 4 === 0 ? g : g.slice(0, g.length - (g.length % 4))],
        ['each block\'s last vec4 dropped', (g) => g.map((x, i) => {
          const j = Math.floor(i / 4), end = Math.min(Math.ceil(g.length / 4), (Math.floor(j / block) + 1) * block);
          return j === end - 1 ? 0 : x;
        })],
        ['each block\'s first vec4 counted twice', (g) => {
          const extra: number[] = [];
          for (let j = 0; 4 * j < g.length; j += block) extra.push(...g.slice(4 * j, 4 * j + 4));
          return Float32Array.from([...g, ...extra]);
        }],
      ];
      for (const [what, edit] of broken) {
        const wrong = brokenNorm(grads, edit);
        expect(Math.abs(wrong - cpu.norm), `${what}: ${wrong} against ${cpu.norm}, bound ${normError}`)
          .toBeGreaterThan(100 * normError);
      }
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
      // the twin's norm is gradNormStats' for this adapter's plan
      expect(await twin.lastGradNorm()).toBe(gradNormStats(grads, 0.5, MULTIPLY_ADD, 1, REDUCE_PARTIALS).norm);
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
    'past 1024 elements per partial of the plan each lane sums several vec4s (laneVec4s 2): norm and step as the twin',
    gpu,
    async (device) => {
      const limit = 1024 * REDUCE_PARTIALS;
      const sizes = [Math.ceil(0.6 * limit), 3, Math.ceil(0.45 * limit) + 1];
      expect(reduceLaneVec4s(sizes, REDUCE_PARTIALS)).toBe(2);
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

describe('the other adapter kind\'s plan, on this adapter', () => {
  // A CPU adapter's plan makes lane partials (no barrier); a GPU's sums each block in workgroup memory.
  // Both run here, each against the twin given the same target.
  for (const target of [REDUCE_TARGET_PARTIALS.gpu, REDUCE_TARGET_PARTIALS.cpu]) {
    test(`target ${target} (${usesLanePartials(target) ? 'lane partials' : 'workgroup sums'}): ` +
      'the norm within normBound of the twin\'s (exact where measured), the step as the twin', async () => {
      const { device } = await requestNodeDevice({ label: `webgpu-rmsprop pre-pass tests (target ${target})` });
      try {
        forceReduceTarget(device, target);
        await withErrorScopes(device, async () => {
          const sizes = [70_001, 1031, 3, 300_000];
          const lane = reduceLaneVec4s(sizes, target);
          const grads = edgeWeighted(sizes, lane, 31);
          const params = sizes.map((n) => randomParams(n, rng(n + 1)));
          const placed = sizes.map((_, i) => ({ param: upload(device, params[i]!), grad: upload(device, grads[i]!) }));
          const options: RMSPropConfig = { clipGradNorm: 50, skipNonFinite: true, momentum: 0.9 };
          const optimizer = new RMSProp(
            device,
            placed.map((p, i) => ({ name: `t${i}`, param: p.param.buffer, grad: p.grad.buffer })),
            options,
          );
          const twin = new CheckedReference(
            sizes.map((_, i) => ({ name: `t${i}`, param: params[i]!.slice(), grad: grads[i]! })),
            options,
            { multiplyAdd: MULTIPLY_ADD, reducePartials: target, track: TOLERANCE.kind === 'bound' },
          );
          const cpu = gradNormStats(grads, 50, MULTIPLY_ADD, 1, target);
          const { normError } = normBound(grads, 50, 1, cpu.norm, cpu.scale, target);
          optimizer.step();
          twin.step();
          const norm = await optimizer.lastGradNorm();
          expect(Math.abs(norm - cpu.norm), `GPU ${norm}, CPU ${cpu.norm}, bound ${normError}`)
            .toBeLessThanOrEqual(normError);
          if (TOLERANCE.kind === 'exact') expect(norm).toBe(cpu.norm);
          expect(cpu.scale, 'clipped').toBeLessThan(1);
          await expectMatchesTwin(optimizer, twin, `target ${target}`);
          optimizer.destroy();
          placed.forEach((p) => { p.param.buffer.destroy(); p.grad.buffer.destroy(); });
        });
      } finally {
        device.destroy();
      }
    }, 120_000);
  }
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
      targetPartials: reduceTargetPartials(d),
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
      expect(plan.laneVec4s).toBe(reduceLaneVec4s([size], reduceTargetPartials(d)));
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

describe('a sum of squares past f32, NaN and Infinity: decided on bits, as the rule states', () => {
  // 2^126 is where the sum saturates (a norm of about 9.2e18); PyTorch's f32 norm overflows at 2^128.
  const cases: [string, (g: Float32Array) => void][] = [
    ['one element of 1e19 (its square alone could overflow)', (g) => { g[700] = 1e19; }],
    ['4,096 elements of 2e17 (each square finite, their sum past 2^126)', (g) => { g.fill(2e17, 0, 4096); }],
  ];
  for (const [what, edit] of cases) {
    for (const options of [
      { clipGradNorm: 1 },
      { clipGradNorm: 1, skipNonFinite: true },
      { skipNonFinite: true },
    ] as RMSPropConfig[]) {
      gpuTest(`${what}, ${JSON.stringify(options)}: norm +Infinity; as the twin`, gpu, async (device) => {
        const sizes = [5000, 3];
        const { params, grads } = values(sizes, 21);
        edit(grads[0]!);
        const placed = sizes.map((_, i) => ({ param: upload(device, params[i]!), grad: upload(device, grads[i]!) }));
        const optimizer = new RMSProp(
          device,
          placed.map((p, i) => ({ name: `t${i}`, param: p.param.buffer, grad: p.grad.buffer })),
          { ...options, momentum: 0.9 },
        );
        const twin = cpuTwin(
          sizes.map((_, i) => ({ name: `t${i}`, param: params[i]!.slice(), grad: grads[i]! })),
          { ...options, momentum: 0.9 },
        );
        const stats = gradNormStats(grads, options.clipGradNorm ?? 0, MULTIPLY_ADD, 1, REDUCE_PARTIALS);
        expect(stats.overflow && !stats.nonFinite).toBe(true);
        expect(stats.norm).toBe(Infinity);
        // Clipping: the factor is exactly 0 (PyTorch: max_norm / inf); skipNonFinite then skips the step.
        expect(stats.scale).toBe(options.clipGradNorm ? 0 : 1);
        const clipping = (options.clipGradNorm ?? 0) > 0;
        expect(stats.skip, 'what skipNonFinite would skip').toBe(clipping);
        const skips = options.skipNonFinite === true && clipping;
        optimizer.step();
        twin.step();
        expect(await optimizer.lastGradNorm()).toBe(Infinity);
        expect(await twin.lastGradNorm()).toBe(Infinity);
        if (options.skipNonFinite) expect(await optimizer.skippedSteps()).toBe(skips ? 1 : 0);
        await expectMatchesTwin(optimizer, twin, what);
        if (skips) {
          const { tensors } = await optimizer.stateDict();
          expect(tensors.every((t) => t.squareAvg.every((x) => x === 0)), 'a skipped step leaves the state').toBe(true);
        }
        optimizer.destroy();
        placed.forEach((p) => { p.param.buffer.destroy(); p.grad.buffer.destroy(); });
      });
    }
  }

  for (const [what, bits] of [['NaN', 0x7fc00001], ['+Infinity', 0x7f800000], ['-Infinity', 0xff800000]] as const) {
    gpuTest(`an element ${what}, clipping without skipping: the rule's norm and factor`, gpu, async (device) => {
      const n = 1031;
      const { params, grads } = values([n], 23);
      new Uint32Array(grads[0]!.buffer)[1030] = bits; // in the tail
      const p = upload(device, params[0]!), g = upload(device, grads[0]!);
      const optimizer = new RMSProp(device, [{ param: p.buffer, grad: g.buffer }], { clipGradNorm: 1 });
      const stats = gradNormStats(grads, 1, MULTIPLY_ADD, 1, REDUCE_PARTIALS);
      expect(stats.nonFinite).toBe(true);
      const nan = what === 'NaN';
      expect(stats.norm).toBe(nan ? NaN : Infinity);
      expect(stats.scale).toBe(nan ? NaN : 0);
      optimizer.step();
      expect(await optimizer.lastGradNorm()).toBe(stats.norm);
      optimizer.destroy();
      p.buffer.destroy();
      g.buffer.destroy();
    });
  }
});
