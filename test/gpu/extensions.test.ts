/**
 * The rule's extensions on the GPU against the CPU twin, at the adapter's tolerance (bit for bit on
 * SwiftShader and lavapipe, the WGSL bound elsewhere):
 * skipNonFinite and clipGradNorm (the gradient pre-pass, shaders/grad-norm.wgsl), Nesterov momentum,
 * decoupled weight decay and Optax's bias correction (override constants of shaders/rmsprop.wgsl).
 */
import { describe, expect, vi } from 'vitest';
import { ParamArena, RMSProp, ReferenceRMSProp, schedules, type RMSPropOptions } from '../../src/index.js';
import { cpuTwin, expectBitExact, expectMatchesTwin, expectNormClose, gpuTest, randomGrads, randomParams, rng, upload, useDevice, write } from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

/** A tail tensor, a lone tail, a vec4 multiple, and one of several workgroups. */
const SIZES = [1031, 3, 64, 5000];

/** Gradients for every tensor of `twin`, with `bad` written at `at` of tensor `tensor`. */
function gradsWith(twin: Twin, tensor: number, at: number, bad: number): Float32Array[] {
  return twin.tensors.map((t, i) => {
    const g = randomGrads(t.size, twin.random);
    if (i === tensor) g[at] = bad;
    return g;
  });
}

/** GPU and CPU state dicts and parameters at the adapter's tolerance, and their skip counters equal. */
async function expectTwinEqual(twin: Twin, what: string): Promise<void> {
  await twin.expectParams(what);
  await twin.expectState(what);
  expect(await twin.gpu.skippedSteps(), `${what}: skipped`).toBe(await twin.cpu.skippedSteps());
}

describe('skipNonFinite', () => {
  gpuTest('a NaN or ±Inf anywhere skips the whole step on the GPU; finite steps go on as the twin', gpu, async (device) => {
    const twin = Twin.ofSizes(device, SIZES, { skipNonFinite: true, momentum: 0.9, centered: true }, 7);
    await twin.run(3);
    const last = SIZES.length - 1;
    // The last element of the last tensor, a tail element, the first element, a body element.
    const cases: [number, number, number][] = [
      [last, SIZES[last]! - 1, NaN],
      [0, 1030, Infinity],
      [0, 0, -Infinity],
      [2, 37, NaN],
    ];
    let skipped = 0;
    for (const [tensor, at, bad] of cases) {
      const before = await twin.gpu.readParams();
      const stateBefore = await twin.gpu.stateDict();
      twin.setGrads(gradsWith(twin, tensor, at, bad));
      twin.step();
      skipped++;
      const after = await twin.gpu.readParams();
      after.forEach((p, i) => expectBitExact(p, before[i]!, `${bad} at [${tensor}][${at}]: param ${i} unchanged`));
      const stateAfter = await twin.gpu.stateDict();
      stateAfter.tensors.forEach((t, i) => {
        for (const slot of ['squareAvg', 'gradAvg', 'momentumBuffer'] as const) expectBitExact(t[slot]!, stateBefore.tensors[i]![slot]!, `${bad}: ${slot} ${i} unchanged`);
      });
      expect(stateAfter.skippedSteps).toBe(skipped);
      expect(await twin.gpu.skippedSteps()).toBe(skipped);
      expect(Number.isFinite(await twin.gpu.lastGradNorm())).toBe(false);
      await expectTwinEqual(twin, `after skipping ${bad}`);
    }
    // A finite step after the skipped ones proceeds normally.
    await twin.run(2);
    await expectTwinEqual(twin, 'finite steps after skips');
    expect(twin.gpu.stepCount).toBe(3 + cases.length + 2);
    expect(await twin.gpu.skippedSteps()).toBe(cases.length);
    // The norm of a finite step, as the twin computes it.
    await twin.expectNorm('norm');
    twin.destroy();
  });

  gpuTest('the pre-pass allocates nothing per step and adds its dispatches to the same compute pass', gpu, async (device) => {
    const twin = Twin.ofSizes(device, SIZES, { skipNonFinite: true, clipGradNorm: 1 }, 9);
    twin.setGrads();
    const made = (['createBuffer', 'createBindGroup', 'createComputePipeline', 'createShaderModule'] as const).map((m) => vi.spyOn(device, m));
    const encoder = device.createCommandEncoder({ label: 'test.encoder' });
    const passes = vi.spyOn(encoder, 'beginComputePass');
    twin.step(encoder);
    device.queue.submit([encoder.finish()]);
    expect(passes).toHaveBeenCalledTimes(1);
    made.forEach((spy) => { expect(spy).not.toHaveBeenCalled(); spy.mockRestore(); });
    await twin.expectParams('after one step');
    twin.destroy();
  });

  gpuTest('the skip count survives a state dict round trip, GPU → CPU → GPU', gpu, async (device) => {
    const options = { skipNonFinite: true, momentum: 0.5 };
    const twin = Twin.ofSizes(device, [70, 5], options, 8);
    twin.setGrads(gradsWith(twin, 1, 4, NaN));
    twin.step();
    await twin.run(1);
    const saved = await twin.gpu.stateDict();
    expect(saved.skippedSteps).toBe(1);
    const cpu = new ReferenceRMSProp(twin.tensors.map((t) => ({ name: t.name, param: t.cpuParam.slice(), grad: t.cpuGrad })), options);
    cpu.loadStateDict(saved);
    expect(await cpu.skippedSteps()).toBe(1);
    const fresh = new RMSProp(device, twin.tensors.map((t) => ({ name: t.name, param: upload(device, t.cpuParam).buffer, grad: t.grad.buffer })), options);
    fresh.loadStateDict(await cpu.stateDict());
    expect(await fresh.skippedSteps()).toBe(1);
    expect(() => fresh.loadStateDict({ ...saved, skippedSteps: 9 })).toThrow(/skippedSteps must be an integer in \[0, state.step\]/);
    fresh.destroy();
    twin.destroy();
  });
});

describe('clipGradNorm', () => {
  const cases: [string, Partial<RMSPropOptions>][] = [
    ['clipped (norm far above maxNorm)', { clipGradNorm: 1, momentum: 0.9 }],
    ['not clipped (maxNorm above the norm: scale 1)', { clipGradNorm: 1e9 }],
    ['clipped, with skipNonFinite, centered, maximize, weightDecay', { clipGradNorm: 0.5, skipNonFinite: true, centered: true, maximize: true, weightDecay: 0.01 }],
  ];
  cases.forEach(([name, options], c) => {
    gpuTest(name, gpu, async (device) => {
      const twin = Twin.ofSizes(device, SIZES, options, 20 + c);
      for (let s = 0; s < 4; s++) {
        twin.setGrads();
        twin.step();
        await twin.expectParams(`step ${s}`);
        await twin.expectNorm(`norm at step ${s}`);
      }
      await twin.expectState();
      twin.destroy();
    });
  });

  gpuTest('over more than 256 partials (the finish loop strides), and an arena', gpu, async (device) => {
    // 300000 elements: 293 workgroups of 1024; then a ParamArena's tensors (one pre-pass dispatch each).
    const twin = Twin.ofSizes(device, [300_000, 1031, 7], { clipGradNorm: 2 }, 30);
    await twin.run(2);
    await twin.expectNorm('norm');
    twin.destroy();

    const sizes = [1000, 3, 4099];
    const arena = new ParamArena(device, sizes.map((size, i) => ({ name: `a${i}`, size })), 'test.arena');
    const random = rng(31);
    const cpuParams = sizes.map((n) => randomParams(n, random));
    const cpuGrads = sizes.map((n) => randomGrads(n, random));
    arena.tensors.forEach((t, i) => { write(device, arena.params, t.offset, cpuParams[i]!); write(device, arena.grads, t.offset, cpuGrads[i]!); });
    const options = { clipGradNorm: 3, skipNonFinite: true, momentum: 0.9 };
    const opt = new RMSProp(device, arena.specs(), options);
    const cpu = cpuTwin(sizes.map((_, i) => ({ name: `a${i}`, param: cpuParams[i]!, grad: cpuGrads[i]! })), options);
    opt.step();
    cpu.step();
    await expectNormClose(opt, cpu, 'norm');
    await expectMatchesTwin(opt, cpu, 'arena');
    opt.destroy();
    arena.destroy();
  });
});

describe('nesterov, decoupled weight decay, bias correction', () => {
  const variants: [string, Partial<RMSPropOptions>][] = [];
  for (const lrInMomentum of [false, true]) {
    for (const centered of [false, true]) {
      variants.push([`nesterov, lrInMomentum ${lrInMomentum}, centered ${centered}`, { nesterov: true, momentum: 0.9, lrInMomentum, centered }]);
    }
  }
  variants.push(['decoupled weight decay', { weightDecay: 0.1, weightDecayMode: 'decoupled', lr: 0.05 }]);
  variants.push(['decoupled weight decay, keras preset, momentum', { weightDecay: 0.01, lr: 0.01, weightDecayMode: 'decoupled', epsMode: 'inside', lrInMomentum: true, momentum: 0.9 }]);
  variants.push(['bias correction (Optax)', { biasCorrection: true, alpha: 0.9, epsMode: 'inside' }]);
  // Centered with bias correction: v starts at 1 and gradients stay below 1, so that v̂ - m̂² is not
  // a cancellation (see extensions-tolerance.test.ts): then hardware stays within its tolerance too.
  variants.push(['bias correction, centered, nesterov', { biasCorrection: true, alpha: 0.9, centered: true, momentum: 0.9, nesterov: true, lrInMomentum: true, initialScale: 1 }]);
  variants.push(['everything at once', { biasCorrection: true, centered: true, momentum: 0.5, nesterov: true, weightDecay: 0.01, weightDecayMode: 'decoupled', clipGradNorm: 10, maximize: true, initialScale: 1 }]);
  variants.forEach(([name, options], v) => {
    gpuTest(name, gpu, async (device) => {
      const twin = Twin.ofSizes(device, [1031, 3, 64], options, 40 + v);
      const factor = options.centered && options.biasCorrection ? 1e-3 : 1;
      const run = async (steps: number) => {
        for (let s = 0; s < steps; s++) {
          twin.setGrads(twin.tensors.map((t) => randomGrads(t.size, twin.random).map((x) => x * factor)));
          twin.step();
          await twin.expectParams();
        }
      };
      await run(6);
      twin.lr = 0.003; // a new lr reaches decayFactor too
      await run(2);
      await twin.expectState();
      twin.destroy();
    });
  });

  gpuTest('bias correction: steps recorded into one encoder each get their own 1 - alpha^t', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [8, 1031], { biasCorrection: true, initialScale: 1 }, 50);
    const encoder = device.createCommandEncoder({ label: 'test.encoder' });
    twin.setGrads(); // the same gradients serve all three steps
    for (let s = 0; s < 3; s++) twin.step(encoder);
    device.queue.submit([encoder.finish()]);
    await twin.expectParams('three bias-corrected steps in one encoder');
    twin.destroy();
  });
});

describe('option errors, before any GPU work', () => {
  gpuTest("clear errors", gpu, async (device) => {
    const p = upload(device, new Float32Array(4)), g = upload(device, new Float32Array(4));
    const specs = [{ param: p.buffer, grad: g.buffer }];
    expect(() => new RMSProp(device, specs, { nesterov: true })).toThrow(/nesterov needs momentum > 0/);
    expect(() => new RMSProp(device, specs, { biasCorrection: true, skipNonFinite: true })).toThrow(RangeError);
    expect(() => new RMSProp(device, specs, { biasCorrection: true, alpha: 1 })).toThrow(/biasCorrection needs alpha < 1/);
    expect(() => new RMSProp(device, specs, { clipGradNorm: -1 })).toThrow(RangeError);
    expect(() => new RMSProp(device, specs, { clipGradNorm: NaN })).toThrow(RangeError);
    expect(() => new RMSProp(device, specs, { weightDecayMode: 'adamw' as never })).toThrow(TypeError);
    expect(() => new RMSProp(device, [{ params: specs, skipNonFinite: true }])).toThrow(/params\[0\]\.skipNonFinite is optimizer-wide/);
    expect(() => new RMSProp(device, [{ params: specs, clipGradNorm: 1 }], { clipGradNorm: 2 })).toThrow(/clipGradNorm is optimizer-wide/);
    const plain = new RMSProp(device, specs);
    await expect(plain.lastGradNorm()).rejects.toThrow(/needs the gradient pre-pass/);
    plain.destroy();
    p.buffer.destroy();
    g.buffer.destroy();
  });
});

describe('learning-rate schedules on the GPU', () => {
  gpuTest('a schedule as lr: the GPU follows the twin, no pipeline rebuilt', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [1031, 3], { lr: schedules.cosineWithWarmup(0.05, 3, 10, { final: 0.001 }), momentum: 0.9 }, 60);
    for (let s = 0; s < 12; s++) {
      twin.setGrads();
      const made = (['createComputePipeline', 'createBuffer', 'createBindGroup'] as const).map((m) => vi.spyOn(device, m));
      twin.step();
      made.forEach((spy) => { expect(spy, `step ${s}`).not.toHaveBeenCalled(); spy.mockRestore(); });
      await twin.expectParams();
    }
    expect(twin.gpu.lr).toBe(0.001);
    await twin.expectState();
    twin.destroy();
  });

  gpuTest('a scheduled lr changes within one encoder; a bad scheduled value throws before any GPU work', gpu, async (device) => {
    const p = upload(device, new Float32Array([1, 2, 3, 4, 5])), g = upload(device, new Float32Array([1, 1, 1, 1, 1]));
    const schedule = (s: number) => [0.1, 0.1, 0.2][s] ?? Infinity;
    const opt = new RMSProp(device, [{ param: p.buffer, grad: g.buffer }], { lr: schedule });
    const cpuParam = new Float32Array([1, 2, 3, 4, 5]);
    const twin = cpuTwin([{ param: cpuParam, grad: new Float32Array([1, 1, 1, 1, 1]) }], { lr: schedule });
    const encoder = device.createCommandEncoder({ label: 'test.encoder' });
    for (let s = 0; s < 3; s++) {
      opt.step(encoder); // lr 0.1, 0.1, 0.2: each step keeps its own
      twin.step();
    }
    device.queue.submit([encoder.finish()]);
    expect(opt.stepCount).toBe(3);
    const before = (await opt.readParams())[0]!;
    await expectMatchesTwin(opt, twin, 'three scheduled steps in one encoder');
    expect(() => opt.step()).toThrow(/returned Infinity at step 3/);
    expectBitExact((await opt.readParams())[0]!, before, 'unchanged after the bad value');
    expect(opt.stepCount).toBe(3);
    opt.destroy();
    p.buffer.destroy();
    g.buffer.destroy();
  });
});

describe('param groups', () => {
  gpuTest('per-group lr, weightDecay, momentum and schedules, with optimizer-wide clipping: as the twin; one pipeline per variant', gpu, async (device) => {
    const random = rng(70);
    const sizes = [[1031, 3], [64, 5], [9]];
    const values = sizes.map((g) => g.map((n) => randomParams(n, random)));
    const grads = sizes.map((g) => g.map((n) => new Float32Array(n)));
    const groupOptions: Partial<RMSPropOptions>[] = [
      { lr: 0.01, weightDecay: 0.1, momentum: 0.9, centered: true, maximize: true }, // one variant ...
      { lr: 0.05, weightDecay: 0.2, momentum: 0.5, centered: true, maximize: true }, // ... shared with this group
      { lr: 0.02, momentum: 0.9, nesterov: true, epsMode: 'inside', lrInMomentum: true, biasCorrection: true, alpha: 0.9 },
    ];
    const options = { clipGradNorm: 5 };
    const placed = values.map((g, i) => g.map((v, j) => ({ param: upload(device, v, { label: `test.g${i}.p${j}` }), grad: upload(device, grads[i]![j]!, { label: `test.g${i}.g${j}` }) })));
    const pipelines = vi.spyOn(device, 'createComputePipeline');
    const opt = new RMSProp(device, placed.map((g, i) => ({ params: g.map((t, j) => ({ name: `g${i}.${j}`, param: t.param.buffer, grad: t.grad.buffer })), ...groupOptions[i] })), options);
    const labels = pipelines.mock.calls.map(([d]) => d.label ?? '');
    pipelines.mockRestore();
    expect(new Set(labels).size).toBe(labels.length); // nothing made twice
    expect(labels.filter((l) => l.startsWith('RMSProp.pipeline[')).length).toBeLessThanOrEqual(4); // two variants, body and tail
    const cpuParams = values.map((g) => g.map((v) => v.slice()));
    const cpu = cpuTwin(cpuParams.map((g, i) => ({ params: g.map((v, j) => ({ name: `g${i}.${j}`, param: v, grad: grads[i]![j]! })), ...groupOptions[i] })), options);
    for (let s = 0; s < 5; s++) {
      grads.forEach((g, i) => g.forEach((x, j) => { x.set(randomGrads(x.length, random)); write(device, placed[i]![j]!.grad.buffer, 0, x); }));
      opt.step();
      cpu.step();
      await expectMatchesTwin(opt, cpu, `step ${s}`, { state: s === 4 });
    }
    await expectNormClose(opt, cpu, 'norm');
    expect(opt.groupOptions.map((o) => o.lr)).toEqual([0.01, 0.05, 0.02]);
    opt.destroy();
    placed.flat().forEach((t) => { t.param.buffer.destroy(); t.grad.buffer.destroy(); });
  });
});
