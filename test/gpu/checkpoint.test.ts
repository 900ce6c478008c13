/**
 * Checkpoints as safetensors bytes on the GPU: resuming from one gives the same trajectory, bit for
 * bit, as never stopping on the same device (every state slot, param groups, lr changed along the
 * way: promised on every adapter, the GPU being deterministic); the GPU agrees with the CPU
 * reference at the adapter's tolerance; the CPU optimizer resumes from the same bytes, bit for bit
 * as itself; and a checkpoint that does not fit is refused with the optimizer left exactly as it was.
 */
import { describe, expect, vi } from 'vitest';
import {
  RMSProp,
  safetensorsToParams,
  safetensorsToStateDict,
  stateDictToSafetensors,
  type ParamGroup,
  type RMSPropOptions,
  type RMSPropState,
} from '../../src/index.js';
import { bits, cpuTwin, expectBitExact, expectMatchesTwin, gpuTest, randomGrads, randomParams, rng, upload, useDevice, write, type CheckedReference, type Placed } from './harness.js';

const gpu = useDevice();

const SIZES = [1031, 64, 3];
const NAMES = ['encoder.weight', 'encoder.bias', 'head.weight'];
const STEPS = 10;
/** The learning rate of each step: a schedule that changes before and after the checkpoint at step 5. */
const LRS = [0.02, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.005];
/** Every state slot in both groups (centered, momentum), with both momentum forms and eps modes. */
const GROUP_OPTIONS: Partial<RMSPropOptions>[] = [
  { centered: true, momentum: 0.9, weightDecay: 0.01 },
  { centered: true, momentum: 0.5, lrInMomentum: true, epsMode: 'inside' },
];
const INITIAL = SIZES.map((n, i) => randomParams(n, rng(100 + i)));
const GRADS = Array.from({ length: STEPS }, (_, s) => SIZES.map((n, i) => randomGrads(n, rng(1000 * s + i))));

const SLOTS = ['squareAvg', 'gradAvg', 'momentumBuffer'] as const;

function groups<T>(specs: T[]): ({ params: T[] } & Partial<RMSPropOptions>)[] {
  return [{ params: [specs[0]!], ...GROUP_OPTIONS[0] }, { params: [specs[1]!, specs[2]!], ...GROUP_OPTIONS[1] }];
}

interface Model {
  readonly params: Placed[];
  readonly grads: Placed[];
}

function model(device: GPUDevice, values: readonly Float32Array[], tag: string): Model {
  return {
    params: values.map((v, i) => upload(device, v, { label: `test.${tag}.${NAMES[i]}` })),
    grads: values.map((v, i) => upload(device, new Float32Array(v.length), { label: `test.${tag}.${NAMES[i]}.grad` })),
  };
}

function optimizer(device: GPUDevice, m: Model): RMSProp {
  return new RMSProp(device, groups(m.params.map((p, i) => ({ name: NAMES[i]!, param: p.buffer, grad: m.grads[i]!.buffer }))) as ParamGroup[]);
}

/** Steps `from` to `to` (exclusive) of the schedule: each step's gradients and lr. */
function train(device: GPUDevice, opt: RMSProp, m: Model, from: number, to: number): void {
  for (let s = from; s < to; s++) {
    GRADS[s]!.forEach((g, i) => write(device, m.grads[i]!.buffer, 0, g));
    if (opt.lr !== LRS[s]) opt.lr = LRS[s]!;
    opt.step();
  }
}

/** The CPU twin over copies of `values`, rounding as this device does (and bounding the GPU's distance). */
function reference(values: readonly Float32Array[]): { opt: CheckedReference; train: (from: number, to: number) => void } {
  const specs = values.map((v, i) => ({ name: NAMES[i]!, param: v.slice(), grad: new Float32Array(v.length) }));
  const opt = cpuTwin(groups(specs));
  return {
    opt,
    train: (from, to) => {
      for (let s = from; s < to; s++) {
        GRADS[s]!.forEach((g, i) => specs[i]!.grad.set(g));
        if (opt.lr !== LRS[s]) opt.lr = LRS[s]!;
        opt.step();
      }
    },
  };
}

function expectSameState(actual: RMSPropState, expected: RMSPropState, what: string): void {
  expect(actual.step, `${what}: step`).toBe(expected.step);
  expect(actual.groups, `${what}: groups`).toEqual(expected.groups);
  actual.tensors.forEach((t, i) => {
    for (const slot of SLOTS) {
      expect(t[slot] === undefined, `${what}: '${t.name}'.${slot} presence`).toBe(expected.tensors[i]![slot] === undefined);
      if (t[slot]) expectBitExact(bits(t[slot]), bits(expected.tensors[i]![slot]!), `${what}: '${t.name}'.${slot}`);
    }
  });
}

function destroy(m: Model): void {
  for (const p of [...m.params, ...m.grads]) p.buffer.destroy();
}

describe('resuming from a safetensors checkpoint', () => {
  gpuTest('5 steps, checkpoint to bytes, a new optimizer loads them, 5 more steps: bit for bit the 10 uninterrupted steps (GPU and CPU)', gpu, async (device) => {
    // Uninterrupted: 10 steps.
    const whole = model(device, INITIAL, 'whole');
    const uninterrupted = optimizer(device, whole);
    train(device, uninterrupted, whole, 0, STEPS);

    // Interrupted: 5 steps, checkpoint (state and parameters), the optimizer destroyed and the
    // parameter buffers overwritten, then everything restored from the bytes alone.
    const m = model(device, INITIAL, 'resumed');
    const first = optimizer(device, m);
    train(device, first, m, 0, 5);
    const bytes = stateDictToSafetensors(await first.stateDict(), { params: await first.readParams() });
    first.destroy();
    m.params.forEach((p) => write(device, p.buffer, 0, new Float32Array(p.binding.size / 4).fill(NaN)));
    safetensorsToParams(bytes).forEach((values, i) => write(device, m.params[i]!.buffer, 0, values));
    const resumed = optimizer(device, m);
    resumed.loadStateDict(safetensorsToStateDict(bytes));
    expect(resumed.stepCount).toBe(5);
    expect(resumed.groupOptions.map((o) => o.lr)).toEqual([LRS[4], LRS[4]]);
    train(device, resumed, m, 5, STEPS);

    const [a, b] = [await resumed.readParams(), await uninterrupted.readParams()];
    a.forEach((p, i) => expectBitExact(p, b[i]!, `'${NAMES[i]}' resumed vs uninterrupted`));
    const state = await uninterrupted.stateDict();
    expectSameState(await resumed.stateDict(), state, 'resumed vs uninterrupted');

    // The CPU reference: 10 uninterrupted steps agree with the GPU at the adapter's tolerance (every
    // state slot too); and it resumes from the same bytes, bit for bit as itself uninterrupted.
    const cpu = reference(INITIAL);
    cpu.train(0, STEPS);
    const cpuParams = await cpu.opt.readParams();
    await expectMatchesTwin(uninterrupted, cpu.opt, 'GPU vs CPU reference, 10 steps');
    const cpuResumed = reference(safetensorsToParams(bytes));
    cpuResumed.opt.loadStateDict(safetensorsToStateDict(bytes));
    cpuResumed.train(5, STEPS);
    (await cpuResumed.opt.readParams()).forEach((p, i) => expectBitExact(p, cpuParams[i]!, `'${NAMES[i]}' CPU resumed vs uninterrupted`));
    expectSameState(await cpuResumed.opt.stateDict(), await cpu.opt.stateDict(), 'CPU resumed vs uninterrupted');

    uninterrupted.destroy();
    resumed.destroy();
    destroy(whole);
    destroy(m);
  });

  gpuTest('skipNonFinite: the count of skipped steps travels in the checkpoint, and the resumed run equals the uninterrupted one', gpu, async (device) => {
    const run = (values: readonly Float32Array[]) => {
      const params = values.map((v, i) => upload(device, v, { label: `test.skip.${NAMES[i]}` }));
      const grads = values.map((v, i) => upload(device, new Float32Array(v.length), { label: `test.skip.${NAMES[i]}.grad` }));
      const opt = new RMSProp(device, params.map((p, i) => ({ name: NAMES[i]!, param: p.buffer, grad: grads[i]!.buffer })), { skipNonFinite: true, momentum: 0.9, centered: true });
      const train = (from: number, to: number) => {
        for (let s = from; s < to; s++) {
          GRADS[s]!.forEach((g, i) => {
            const withNaN = s === 2 && i === 1 ? g.map((x, k) => (k === 7 ? NaN : x)) : g; // step 2 is skipped
            write(device, grads[i]!.buffer, 0, withNaN);
          });
          opt.step();
        }
      };
      return { opt, params, grads, train };
    };
    const whole = run(INITIAL);
    whole.train(0, 6);
    const first = run(INITIAL);
    first.train(0, 4);
    const bytes = stateDictToSafetensors(await first.opt.stateDict(), { params: await first.opt.readParams() });
    const resumed = run(safetensorsToParams(bytes));
    resumed.opt.loadStateDict(safetensorsToStateDict(bytes));
    expect(await resumed.opt.skippedSteps()).toBe(1);
    resumed.train(4, 6);
    expect(await whole.opt.skippedSteps()).toBe(1);
    expect(await resumed.opt.skippedSteps()).toBe(1);
    const [a, b] = [await resumed.opt.readParams(), await whole.opt.readParams()];
    a.forEach((p, i) => expectBitExact(p, b[i]!, `'${NAMES[i]}' resumed vs uninterrupted`));
    expectSameState(await resumed.opt.stateDict(), await whole.opt.stateDict(), 'resumed vs uninterrupted');
    for (const r of [whole, first, resumed]) {
      r.opt.destroy();
      for (const x of [...r.params, ...r.grads]) x.buffer.destroy();
    }
  });

  gpuTest('a checkpoint that does not fit is refused with a clear error; params, state and step stay bit-identical', gpu, async (device) => {
    const m = model(device, INITIAL, 'target');
    const opt = optimizer(device, m);
    train(device, opt, m, 0, 3);
    const before = { state: await opt.stateDict(), params: await opt.readParams() };
    const good = stateDictToSafetensors(before.state);

    // Checkpoints of other optimizers: other options, other sizes, other names.
    const foreign = async (values: Float32Array[], build: (specs: { name: string; param: GPUBuffer; grad: GPUBuffer }[]) => RMSProp) => {
      const other = model(device, values, 'foreign');
      const o = build(other.params.map((p, i) => ({ name: NAMES[i]!, param: p.buffer, grad: other.grads[i]!.buffer })));
      const bytes = stateDictToSafetensors(await o.stateDict());
      o.destroy();
      destroy(other);
      return bytes;
    };
    const otherMomentum = await foreign(INITIAL, (s) => new RMSProp(device, [{ params: [s[0]!], ...GROUP_OPTIONS[0], momentum: 0.8 }, { params: [s[1]!, s[2]!], ...GROUP_OPTIONS[1] }]));
    const otherSizes = await foreign([new Float32Array(1030), INITIAL[1]!, INITIAL[2]!], (s) => new RMSProp(device, groups(s)));
    const oneGroup = await foreign(INITIAL, (s) => new RMSProp(device, s, GROUP_OPTIONS[0]));
    const truncated = good.subarray(0, good.length - 4);
    const cases: [string, () => void, RegExp][] = [
      ['other momentum', () => opt.loadStateDict(safetensorsToStateDict(otherMomentum)), /momentum = 0.8 in group 0, but this optimizer has 0.9: create it with the same options/],
      ['other sizes', () => opt.loadStateDict(safetensorsToStateDict(otherSizes)), /tensor 0 \('encoder.weight'\) has 1030 elements in the state but 1031 here/],
      ['one group, not two', () => opt.loadStateDict(safetensorsToStateDict(oneGroup)), /1 param groups, this optimizer 2/],
      ['a truncated file', () => opt.loadStateDict(safetensorsToStateDict(truncated)), /'head.weight.momentum_buffer' has data_offsets .* outside/],
    ];
    const writeBuffer = vi.spyOn(device.queue, 'writeBuffer');
    try {
      for (const [what, attempt, message] of cases) {
        let error: unknown;
        try {
          attempt();
        } catch (e) {
          error = e;
        }
        expect(error instanceof RangeError || error instanceof TypeError, `${what}: ${String(error)}`).toBe(true);
        expect((error as Error).message, what).toMatch(message);
        expect(writeBuffer, what).not.toHaveBeenCalled();
      }
    } finally {
      writeBuffer.mockRestore();
    }
    expect(opt.stepCount).toBe(3);
    expectSameState(await opt.stateDict(), before.state, 'after the refused loads');
    (await opt.readParams()).forEach((p, i) => expectBitExact(p, before.params[i]!, `'${NAMES[i]}' after the refused loads`));
    // And the good checkpoint still loads.
    opt.loadStateDict(safetensorsToStateDict(good));
    expectSameState(await opt.stateDict(), before.state, 'after loading the good checkpoint');
    opt.destroy();
    destroy(m);
  });
});
