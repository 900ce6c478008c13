/**
 * src/rule/schedules.ts against torch.optim.lr_scheduler (values recorded by
 * test/fixtures/make_torch_fixtures.py into test/fixtures/torch-extensions/lr-schedules.json) and
 * Optax's closed forms; and the optimizers' handling of a schedule as `lr`.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ReferenceRMSProp } from '../../src/rule/reference-optimizer.js';
import { cosineWithWarmup, exponential, linearWarmup, schedules, stepDecay } from '../../src/rule/schedules.js';

interface Recorded { lrs: number[]; [k: string]: number | number[] }
const torch = JSON.parse(readFileSync(new URL('../fixtures/torch-extensions/lr-schedules.json', import.meta.url), 'utf8')) as Record<string, Recorded>;

/**
 * PyTorch's schedulers update lr recursively (lr *= gamma each step), these compute a closed form:
 * the same values to a few double ULPs, far below the f32 rounding the GPU applies.
 */
const RELATIVE = 1e-13;

function expectClose(ours: (s: number) => number, theirs: number[], steps = theirs.length): void {
  for (let s = 0; s < steps; s++) {
    expect(Math.abs(ours(s) - theirs[s]!) / theirs[s]!, `step ${s}: ${ours(s)} vs torch ${theirs[s]}`).toBeLessThan(RELATIVE);
  }
}

describe('schedules vs torch.optim.lr_scheduler', () => {
  it('stepDecay is StepLR', () => {
    const t = torch.stepLR!;
    expectClose(stepDecay(t.lr as number, t.stepSize as number, t.gamma as number), t.lrs);
  });
  it('exponential is ExponentialLR (transitionSteps 1)', () => {
    const t = torch.exponentialLR!;
    expectClose(exponential(t.lr as number, t.gamma as number), t.lrs);
  });
  it('linearWarmup is LinearLR(start_factor, total_iters)', () => {
    const t = torch.linearLR!;
    expectClose(linearWarmup(t.lr as number, t.totalIters as number, (t.lr as number) * (t.startFactor as number)), t.lrs);
  });
  it('cosineWithWarmup without warmup is CosineAnnealingLR up to T_max (then holds eta_min; PyTorch restarts)', () => {
    const t = torch.cosineAnnealingLR!;
    const f = cosineWithWarmup(t.lr as number, 0, t.tMax as number, { final: t.etaMin as number });
    expectClose(f, t.lrs, (t.tMax as number) + 1);
    expect(f(1000)).toBe(t.etaMin);
  });
});

describe("schedules' Optax forms", () => {
  it('warmup then cosine: warmup_cosine_decay_schedule', () => {
    const f = cosineWithWarmup(1, 10, 110, { initial: 0.1, final: 0.01 });
    expect(f(0)).toBe(0.1);
    expect(f(5)).toBeCloseTo(0.55, 15);
    expect(f(10)).toBe(1);
    expect(f(60)).toBeCloseTo(0.01 + 0.99 * 0.5, 15);
    expect(f(110)).toBeCloseTo(0.01, 15);
    expect(f(500)).toBeCloseTo(0.01, 15);
  });
  it('exponential_decay with transition steps and staircase', () => {
    expect(exponential(1, 0.5, 10)(5)).toBeCloseTo(Math.SQRT1_2, 15);
    expect(exponential(1, 0.5, 10, true)(15)).toBe(0.5);
  });
  it('bad arguments are RangeErrors naming the argument', () => {
    expect(() => stepDecay(0.1, 0)).toThrow(/stepDecay\(stepSize\) must be a positive integer/);
    expect(() => exponential(-1, 0.9)).toThrow(/exponential\(lr\)/);
    expect(() => linearWarmup(0.1, 1.5)).toThrow(/linearWarmup\(warmupSteps\)/);
    expect(() => cosineWithWarmup(0.1, 10, 10)).toThrow(/must exceed warmupSteps/);
    expect(Object.keys(schedules).sort()).toEqual(['cosineWithWarmup', 'exponential', 'linearWarmup', 'stepDecay']);
  });
});

describe('a schedule as lr', () => {
  it('is called with the 0-based step count and sets each step\'s lr, as setting lr by hand does', () => {
    const f = cosineWithWarmup(0.05, 3, 12);
    const a = new Float32Array([1, -2, 3]), b = a.slice(), ga = new Float32Array(3), gb = new Float32Array(3);
    const scheduled = new ReferenceRMSProp([{ param: a, grad: ga }], { lr: f, momentum: 0.9 });
    const manual = new ReferenceRMSProp([{ param: b, grad: gb }], { lr: 1, momentum: 0.9 });
    for (let s = 0; s < 12; s++) {
      ga.set([0.1 * s, -0.3, 0.7]);
      gb.set(ga);
      manual.lr = f(s);
      scheduled.step();
      manual.step();
      expect(scheduled.lr).toBe(f(s));
    }
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it('a group may have its own schedule, or a fixed lr, or follow the optimizer\'s', () => {
    const spec = () => ({ param: new Float32Array(2), grad: new Float32Array(2) });
    const opt = new ReferenceRMSProp([{ params: [spec()] }, { params: [spec()], lr: 0.5 }, { params: [spec()], lr: (s) => 0.01 * (s + 1) }], { lr: (s) => 0.1 / (s + 1) });
    opt.step();
    opt.step();
    expect(opt.groupOptions.map((o) => o.lr)).toEqual([0.05, 0.5, 0.02]);
    opt.lr = 0.3; // a fixed lr replaces the schedules
    opt.step();
    expect(opt.groupOptions.map((o) => o.lr)).toEqual([0.3, 0.3, 0.3]);
  });

  it('a bad value throws before anything changes, naming the group and step', async () => {
    const param = new Float32Array([1, 2]), grad = new Float32Array([0.5, 0.5]);
    const opt = new ReferenceRMSProp([{ param, grad }], { lr: (s) => (s < 1 ? 0.1 : s === 1 ? NaN : -1) });
    opt.step();
    const before = param.slice();
    expect(() => opt.step()).toThrow(/the lr schedule of param group 0 returned NaN at step 1/);
    expect(Array.from(param)).toEqual(Array.from(before));
    expect(opt.stepCount).toBe(1);
    expect(opt.lr).toBe(0.1);
    expect(() => new ReferenceRMSProp([{ param, grad }], { lr: () => -1 })).toThrow(RangeError);
    expect(() => new ReferenceRMSProp([{ param, grad }], { lr: (() => 'x') as never })).toThrow(TypeError);
    // State dicts carry the current lr as a number.
    expect(typeof (await opt.stateDict()).groups[0]!.options.lr).toBe('number');
  });
});
