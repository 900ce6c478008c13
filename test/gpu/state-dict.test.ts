/**
 * stateDict() and loadStateDict(): bit-exact round trips on the GPU, GPU to CPU and back, and
 * mismatched states rejected with nothing changed.
 */
import { describe, expect, vi } from 'vitest';
import { RMSProp, ReferenceRMSProp, type RMSPropState } from '../../src/index.js';
import { MULTIPLY_ADD, bits, cpuTwin, expectBitExact, expectMatchesTwin, gpuTest, randomGrads, rng, upload, useDevice } from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

const SLOTS = ['squareAvg', 'gradAvg', 'momentumBuffer'] as const;

/** Asserts two states are identical: step, groups (options and lr), names, sizes and every slot bit for bit. */
function expectSameState(actual: RMSPropState, expected: RMSPropState, what: string): void {
  expect(actual.step, `${what}: step`).toBe(expected.step);
  expect(actual.groups, `${what}: groups`).toEqual(expected.groups);
  expect(actual.tensors.length).toBe(expected.tensors.length);
  actual.tensors.forEach((t, i) => {
    const e = expected.tensors[i]!;
    expect([t.name, t.size]).toEqual([e.name, e.size]);
    for (const slot of SLOTS) {
      expect(t[slot] === undefined, `${what}: '${t.name}'.${slot} presence`).toBe(e[slot] === undefined);
      if (t[slot]) expectBitExact(bits(t[slot]), bits(e[slot]!), `${what}: '${t.name}'.${slot}`);
    }
  });
}

const OPTIONS = { centered: true, momentum: 0.9, lr: 0.02 };
const SIZES = [1031, 3];

describe('stateDict / loadStateDict', () => {
  gpuTest('GPU → GPU: a new optimizer loads the state bit for bit, then steps exactly as the original', gpu, async (device) => {
    const a = Twin.ofSizes(device, SIZES, OPTIONS, 61);
    await a.run(3);
    a.gpu.lr = 0.007; // the state carries the current lr
    const saved = await a.gpu.stateDict();
    expect(saved.step).toBe(3);
    expect(saved.groups[0]!.options.lr).toBe(0.007);

    // B trains copies of A's parameters; fresh state, then A's.
    const values = await a.gpu.readParams();
    const b = new RMSProp(device, values.map((v, i) => ({ name: a.tensors[i]!.name, param: upload(device, v).buffer, grad: a.tensors[i]!.grad.buffer })), OPTIONS);
    b.loadStateDict(saved);
    expect(b.stepCount).toBe(3);
    expect(b.lr).toBe(0.007);
    expectSameState(await b.stateDict(), saved, 'loaded');

    // Loading a state into the optimizer that saved it changes nothing either.
    a.gpu.loadStateDict(saved);
    expectSameState(await a.gpu.stateDict(), saved, 'reloaded');

    // One more step of each on the same gradients: identical parameters and state (the GPU is deterministic).
    a.setGrads();
    a.gpu.step();
    b.step();
    const [pa, pb] = [await a.gpu.readParams(), await b.readParams()];
    pa.forEach((p, i) => expectBitExact(pb[i]!, p, `param ${i} after a step`));
    expectSameState(await b.stateDict(), await a.gpu.stateDict(), 'after a step');
    b.destroy();
    a.destroy();
  });

  gpuTest('GPU → ReferenceRMSProp: the CPU optimizer loads the GPU state and steps on in agreement', gpu, async (device) => {
    const a = Twin.ofSizes(device, SIZES, OPTIONS, 67);
    await a.run(3);
    const saved = await a.gpu.stateDict();
    const values = await a.gpu.readParams();
    const grads = values.map((v) => new Float32Array(v.length));
    const cpu = cpuTwin(values.map((v, i) => ({ name: a.tensors[i]!.name, param: v, grad: grads[i]! })), OPTIONS);
    cpu.loadStateDict(saved); // the same bits on both sides: the twin's bound starts again at 0
    expectSameState(await cpu.stateDict(), saved, 'CPU after loading');
    // Both step on the same gradients: the CPU optimizer agrees with the GPU (within tolerance).
    const random = rng(5);
    for (let s = 0; s < 2; s++) {
      const g = values.map((v) => randomGrads(v.length, random));
      a.setGrads(g);
      a.gpu.step();
      g.forEach((x, i) => grads[i]!.set(x));
      cpu.step();
      await expectMatchesTwin(a.gpu, cpu, `step ${s + 1} after the load`);
    }
    expect(cpu.stepCount).toBe(5);
    a.destroy();
  });

  gpuTest('ReferenceRMSProp → GPU: the GPU optimizer loads a CPU state bit for bit', gpu, async (device) => {
    const random = rng(71);
    const values = SIZES.map((n) => Float32Array.from({ length: n }, () => random() - 0.5));
    const grads = SIZES.map((n) => new Float32Array(n));
    const cpu = new ReferenceRMSProp(values.map((v, i) => ({ name: `t${i}.size${SIZES[i]}`, param: v, grad: grads[i]! })), OPTIONS, { multiplyAdd: MULTIPLY_ADD });
    for (let s = 0; s < 4; s++) {
      grads.forEach((g) => g.set(randomGrads(g.length, random)));
      cpu.step();
    }
    cpu.lr = 0.004;
    const saved = await cpu.stateDict();
    const twin = Twin.ofSizes(device, SIZES, OPTIONS, 71);
    twin.gpu.loadStateDict(saved);
    expectSameState(await twin.gpu.stateDict(), saved, 'GPU after loading a CPU state');
    expect(twin.gpu.stepCount).toBe(4);
    expect(twin.gpu.lr).toBe(0.004);
    twin.destroy();
  });

  gpuTest('a mismatched state throws a RangeError or TypeError, writes nothing, and leaves params and state as they were', gpu, async (device) => {
    const twin = Twin.ofSizes(device, SIZES, OPTIONS, 73);
    await twin.run(2);
    const good = await twin.gpu.stateDict();
    const paramsBefore = await twin.gpu.readParams();
    const renamed = { ...good, tensors: good.tensors.map((t, i) => (i === 1 ? { ...t, name: 'other' } : t)) };
    const resized = { ...good, tensors: good.tensors.map((t, i) => (i === 0 ? { ...t, size: 1030, squareAvg: t.squareAvg.subarray(1) } : t)) };
    const otherOptions = { ...good, groups: [{ ...good.groups[0]!, options: { ...good.groups[0]!.options, alpha: 0.9 } }] };
    const notCentered = {
      ...good,
      groups: [{ ...good.groups[0]!, options: { ...good.groups[0]!.options, centered: false } }],
      tensors: good.tensors.map(({ gradAvg: _, ...t }) => t),
    };
    const missingSlot = { ...good, tensors: good.tensors.map(({ momentumBuffer: _, ...t }, i) => (i === 1 ? t : good.tensors[i]!)) };
    const fewer = { ...good, tensors: good.tensors.slice(0, 1) };
    const shortSlot = { ...good, tensors: good.tensors.map((t, i) => (i === 0 ? { ...t, gradAvg: t.gradAvg!.subarray(1) } : t)) };
    // A state saved from a GPU optimizer over other parameters (sizes 5 and 3, different names).
    const other = Twin.ofSizes(device, [5, 3], OPTIONS, 1);
    const foreign = await other.gpu.stateDict();
    other.destroy();
    const cases: [string, unknown, RegExp][] = [
      ['a tensor renamed', renamed, /tensor 1 \('t1\.size3'\) is named 'other'/],
      ['a tensor of another size', resized, /tensor 0 \('t0\.size1031'\) has 1030 elements/],
      ['other options', otherOptions, /alpha/],
      ['another variant', notCentered, /centered/],
      ['a missing slot', missingSlot, /momentumBuffer/],
      ['fewer tensors', fewer, /1 tensors/],
      ['a slot of the wrong length', shortSlot, /gradAvg has 1030 elements, expected 1031/],
      ['another optimizer\'s state', foreign, /t0\.size1031/],
      ['not a state', { step: 1 }, /groups/],
      ['a negative step', { ...good, step: -1 }, /step/],
    ];
    const writeBuffer = vi.spyOn(device.queue, 'writeBuffer');
    try {
      for (const [what, state, message] of cases) {
        let error: unknown;
        try {
          twin.gpu.loadStateDict(state as RMSPropState);
        } catch (e) {
          error = e;
        }
        expect(error, what).toBeDefined();
        expect(error instanceof RangeError || error instanceof TypeError, `${what}: ${String(error)}`).toBe(true);
        expect((error as Error).message, what).toMatch(message);
        expect(writeBuffer, what).not.toHaveBeenCalled();
      }
    } finally {
      writeBuffer.mockRestore();
    }
    expectSameState(await twin.gpu.stateDict(), good, 'after the failed loads');
    (await twin.gpu.readParams()).forEach((p, i) => expectBitExact(p, paramsBefore[i]!, `param ${i} after the failed loads`));
    expect(twin.gpu.lr).toBe(OPTIONS.lr);
    // Still trains as before.
    await twin.run(1);
    twin.destroy();
  });
});
