/**
 * Device loss in the middle of training (`device.destroy()` stands in for a GPU reset or a driver
 * crash): every call fails clearly, naming the reason, and none hangs; then the last checkpoint
 * (safetensors bytes, parameters included) restores onto a new device, and training goes on exactly
 * as if it had never stopped.
 */
import { describe, expect, test } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import {
  RMSProp,
  safetensorsToParams,
  safetensorsToStateDict,
  stateDictToSafetensors,
  type RMSPropOptions,
} from '../../src/index.js';
import { bits, cpuTwin, expectBitExact, expectMatchesTwin, gpuTest, randomGrads, randomParams, rng, upload, useDevice, write, type Placed } from './harness.js';

const gpu = useDevice();

const SIZES = [4099, 5];
const OPTIONS: Partial<RMSPropOptions> = { centered: true, momentum: 0.9, weightDecay: 0.01, lr: 0.01 };
const STEPS = 8;
const CHECKPOINT_AT = 3;
const LOST_AT = 5;
const INITIAL = SIZES.map((n, i) => randomParams(n, rng(7 + i)));
const GRADS = Array.from({ length: STEPS }, (_, s) => SIZES.map((n, i) => randomGrads(n, rng(500 * s + i))));
/** Longer than any call may take to fail: a call still pending after this hangs. */
const HANG_MS = 5_000;

interface Run {
  readonly opt: RMSProp;
  readonly params: Placed[];
  readonly grads: Placed[];
}

function start(device: GPUDevice, values: readonly Float32Array[]): Run {
  const params = values.map((v, i) => upload(device, v, { label: `test.w${i}` }));
  const grads = values.map((v, i) => upload(device, new Float32Array(v.length), { label: `test.w${i}.grad` }));
  const opt = new RMSProp(device, params.map((p, i) => ({ name: `w${i}`, param: p.buffer, grad: grads[i]!.buffer })), OPTIONS);
  return { opt, params, grads };
}

function train(device: GPUDevice, run: Run, from: number, to: number): void {
  for (let s = from; s < to; s++) {
    GRADS[s]!.forEach((g, i) => write(device, run.grads[i]!.buffer, 0, g));
    run.opt.lr = 0.01 / (1 + s); // a schedule: the checkpoint must carry the lr of its step
    run.opt.step();
  }
}

/** Settles `p` or fails after HANG_MS: what it settled to. */
async function settle<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown } | 'hung'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), HANG_MS); });
  try {
    return await Promise.race([p.then((value) => ({ value }), (error: unknown) => ({ error })), hung]);
  } finally {
    clearTimeout(timer);
  }
}

function expectLostError(result: unknown, call: string): void {
  expect(result, `${call} hung`).not.toBe('hung');
  expect(result, `${call} should fail`).toHaveProperty('error');
  const error = (result as { error: unknown }).error;
  expect(error, call).toBeInstanceOf(Error);
  expect((error as Error).message, call).toMatch(new RegExp(`^RMSProp\\.${call.replace(/[().]/g, '\\$&')}: the GPU device was lost \\(destroyed.*loadStateDict from your last checkpoint`));
}

describe('the device is lost mid-training', () => {
  gpuTest('every call fails clearly and none hangs; the last checkpoint resumes on a new device, bit for bit as never stopping', gpu, async (device) => {
    const doomed = (await requestNodeDevice({ label: 'webgpu-rmsprop device-loss test (to be destroyed)' })).device;
    const run = start(doomed, INITIAL);
    train(doomed, run, 0, CHECKPOINT_AT);
    const checkpoint = stateDictToSafetensors(await run.opt.stateDict(), { params: await run.opt.readParams() });
    train(doomed, run, CHECKPOINT_AT, LOST_AT);

    // A read in flight when the device dies, and one started right after (before `lost` settles):
    // both reject with the reason, neither hangs.
    const inFlight = run.opt.readParams();
    doomed.destroy();
    const rightAfter = run.opt.stateDict();
    expectLostError(await settle(inFlight), 'readParams()');
    expectLostError(await settle(rightAfter), 'stateDict()');

    // Once `lost` has settled, every call throws at once, before any GPU work.
    const info = await doomed.lost;
    expect(info.reason).toBe('destroyed');
    expect(() => run.opt.step()).toThrow(/^RMSProp\.step\(\): the GPU device was lost \(destroyed/);
    expectLostError(await settle(run.opt.readParams()), 'readParams()');
    expectLostError(await settle(run.opt.stateDict()), 'stateDict()');
    expect(() => run.opt.loadStateDict(safetensorsToStateDict(checkpoint))).toThrow(/^RMSProp\.loadStateDict\(\): the GPU device was lost/);
    expect(() => { run.opt.lr = 0.5; }).not.toThrow(); // a plain setter: it takes effect on the next optimizer's load, not here
    run.opt.destroy(); // still frees what it can, and does not throw
    run.opt.destroy();

    // A new device: parameters and optimizer state from the checkpoint bytes alone.
    const resumed = start(device, safetensorsToParams(checkpoint));
    resumed.opt.loadStateDict(safetensorsToStateDict(checkpoint));
    expect(resumed.opt.stepCount).toBe(CHECKPOINT_AT);
    train(device, resumed, CHECKPOINT_AT, STEPS);

    // Against an uninterrupted run on this device, and against the CPU reference.
    const whole = start(device, INITIAL);
    train(device, whole, 0, STEPS);
    const [a, b] = [await resumed.opt.readParams(), await whole.opt.readParams()];
    a.forEach((p, i) => expectBitExact(p, b[i]!, `w${i}: resumed on a new device vs uninterrupted`));
    const [sa, sb] = [await resumed.opt.stateDict(), await whole.opt.stateDict()];
    expect(sa.step).toBe(STEPS);
    expect(sa.groups).toEqual(sb.groups);
    sa.tensors.forEach((t, i) => {
      for (const slot of ['squareAvg', 'gradAvg', 'momentumBuffer'] as const) expectBitExact(bits(t[slot]!), bits(sb.tensors[i]![slot]!), `w${i}.${slot}`);
    });

    const specs = INITIAL.map((v, i) => ({ name: `w${i}`, param: v.slice(), grad: new Float32Array(v.length) }));
    const cpu = cpuTwin(specs, OPTIONS);
    for (let s = 0; s < STEPS; s++) {
      GRADS[s]!.forEach((g, i) => specs[i]!.grad.set(g));
      cpu.lr = 0.01 / (1 + s);
      cpu.step();
    }
    await expectMatchesTwin(resumed.opt, cpu, 'resumed on a new device vs the CPU reference');

    for (const r of [resumed, whole]) {
      r.opt.destroy();
      for (const p of [...r.params, ...r.grads]) p.buffer.destroy();
    }
  });

  test('a step recorded after the device died, before `lost` settled, neither throws nor hangs; the next call says the device is lost', async () => {
    const doomed = (await requestNodeDevice({ label: 'webgpu-rmsprop device-loss test (to be destroyed)' })).device;
    const run = start(doomed, INITIAL);
    train(doomed, run, 0, 1);
    doomed.destroy();
    // WebGPU reports loss only through the `lost` promise: until it settles a submit is silently dropped.
    expect(() => run.opt.step()).not.toThrow();
    await doomed.lost;
    expect(() => run.opt.step()).toThrow(/the GPU device was lost \(destroyed/);
    expect(run.opt.stepCount).toBe(2);
    run.opt.destroy();
  });
});
