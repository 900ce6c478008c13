/** ReferenceRMSProp, the CPU optimizer: groups, lr, state dicts, argument checks, destroy. */
import { describe, expect, it } from 'vitest';
import { createReferenceState, referenceStep } from '../../src/rule/reference.js';
import { ReferenceRMSProp, type ReferenceParamGroup, type ReferenceParamSpec } from '../../src/rule/reference-optimizer.js';
import { DEFAULT_OPTIONS, resolveOptions, type RMSPropOptions } from '../../src/rule/options.js';
import type { RMSPropState } from '../../src/state/state-dict.js';
import { bits, values } from './helpers/arrays.js';

/** New gradients for step `step` into every spec (same data for twins built alike). */
function feed(specs: ReferenceParamSpec[], step: number): void {
  specs.forEach((s, i) => s.grad.set(values(s.grad.length, 1000 * step + i + 1, 10)));
}

const sizes = [5, 64, 3];
const makeSpecs = (): ReferenceParamSpec[] =>
  sizes.map((n, i) => ({ param: values(n, 77 + i), grad: new Float32Array(n), name: `w${i}` }));

/** Two groups with their own options over the optimizer's base options. */
const makeGroups = (specs: ReferenceParamSpec[]): ReferenceParamGroup[] => [
  { params: [specs[0]!, specs[1]!] },
  { params: [specs[2]!], lr: 0.05, centered: true, weightDecay: 0.01 },
];
const base: Partial<RMSPropOptions> = { lr: 0.01, momentum: 0.9 };

function run(optimizer: ReferenceRMSProp, specs: ReferenceParamSpec[], from: number, to: number): Float32Array[][] {
  const trajectory: Float32Array[][] = [];
  for (let s = from; s < to; s++) {
    feed(specs, s);
    optimizer.step();
    trajectory.push(specs.map((p) => p.param.slice()));
  }
  return trajectory;
}

describe('param groups', () => {
  it('each group steps with its own options over the base options, exactly as referenceStep', () => {
    const specs = makeSpecs();
    const twins = specs.map((s) => ({ param: s.param.slice(), grad: s.grad }));
    const optimizer = new ReferenceRMSProp(makeGroups(specs), base);
    const o0 = resolveOptions(base), o1 = resolveOptions({ ...base, lr: 0.05, centered: true, weightDecay: 0.01 });
    expect(optimizer.groupOptions).toEqual([o0, o1]);
    const states = twins.map((t, i) => createReferenceState(t.param.length, i < 2 ? o0 : o1));
    for (let s = 0; s < 5; s++) {
      feed(specs, s);
      optimizer.step();
      twins.forEach((t, i) => referenceStep(t.param, t.grad, states[i]!, i < 2 ? o0 : o1));
      specs.forEach((p, i) => expect(bits(p.param)).toEqual(bits(twins[i]!.param)));
    }
    expect(optimizer.stepCount).toBe(5);
  });

  it('a flat list is one group with the optimizer options; no options means PyTorch defaults', () => {
    const optimizer = new ReferenceRMSProp(makeSpecs());
    expect(optimizer.groupOptions).toEqual([DEFAULT_OPTIONS]);
    expect(optimizer.lr).toBe(0.01);
  });

  it('validates group options, naming the group', () => {
    const specs = makeSpecs();
    expect(() => new ReferenceRMSProp([{ params: [specs[0]!] }, { params: [specs[1]!], alpha: 2 }])).toThrow(/params\[1\]\.alpha/);
    expect(() => new ReferenceRMSProp([{ params: [specs[0]!], rho: 0.9 } as ReferenceParamGroup])).toThrow(TypeError);
  });
});

describe('lr', () => {
  it('reads the first group, sets every group, and applies from the next step', () => {
    const specs = makeSpecs();
    const optimizer = new ReferenceRMSProp(makeGroups(specs), base);
    expect(optimizer.lr).toBe(0.01);
    optimizer.lr = 0.002;
    expect(optimizer.lr).toBe(0.002);
    expect(optimizer.groupOptions.map((o) => o.lr)).toEqual([0.002, 0.002]);
    // lr 0 with momentum 0 leaves the parameters unchanged.
    const plain = makeSpecs();
    const still = new ReferenceRMSProp(plain);
    still.lr = 0;
    const before = plain.map((p) => bits(p.param));
    run(still, plain, 0, 2);
    expect(plain.map((p) => bits(p.param))).toEqual(before);
  });

  it('rejects a bad lr with a RangeError (TypeError for a non-number) and keeps the old one', () => {
    const optimizer = new ReferenceRMSProp(makeSpecs(), { lr: 0.03 });
    for (const bad of [-1, NaN, Infinity, -Infinity]) {
      expect(() => { optimizer.lr = bad; }).toThrow(RangeError);
      expect(() => { optimizer.lr = bad; }).toThrow(/\blr\b/);
    }
    expect(() => { optimizer.lr = '0.1' as unknown as number; }).toThrow(TypeError);
    expect(optimizer.lr).toBe(0.03);
  });
});

describe('stateDict / loadStateDict', () => {
  it('round-trips bit for bit, and resuming gives the trajectory of never stopping', async () => {
    // Uninterrupted run: 6 steps, with an lr change after step 2.
    const a = makeSpecs();
    const straight = new ReferenceRMSProp(makeGroups(a), base);
    run(straight, a, 0, 3);
    straight.lr = 0.004;
    const expected = run(straight, a, 3, 6);

    // Interrupted: 3 steps, save (params and state), a new optimizer, load, 3 more.
    const b = makeSpecs();
    const first = new ReferenceRMSProp(makeGroups(b), base);
    run(first, b, 0, 3);
    first.lr = 0.004;
    const saved = await first.stateDict();
    const params = b.map((p) => p.param.slice());
    first.destroy();

    const c = makeSpecs().map((s, i) => ({ ...s, param: params[i]! }));
    const resumed = new ReferenceRMSProp(makeGroups(c), base);
    resumed.loadStateDict(saved);
    expect(resumed.stepCount).toBe(3);
    expect(resumed.lr).toBe(0.004);
    const again = await resumed.stateDict();
    expect(again.step).toBe(saved.step);
    expect(again.groups).toEqual(saved.groups);
    again.tensors.forEach((t, i) => {
      const s = saved.tensors[i]!;
      expect(t.name).toBe(s.name);
      expect(bits(t.squareAvg)).toEqual(bits(s.squareAvg));
      expect(t.gradAvg && bits(t.gradAvg)).toEqual(s.gradAvg && bits(s.gradAvg));
      expect(t.momentumBuffer && bits(t.momentumBuffer)).toEqual(s.momentumBuffer && bits(s.momentumBuffer));
    });
    const got = run(resumed, c, 3, 6);
    got.forEach((step, s) => step.forEach((p, i) => expect(bits(p)).toEqual(bits(expected[s]![i]!))));
  });

  it('holds the slots the options use, named and sized per parameter', async () => {
    const optimizer = new ReferenceRMSProp(makeGroups(makeSpecs()), base);
    const state = await optimizer.stateDict();
    expect(state.step).toBe(0);
    expect(state.groups.map((g) => g.params)).toEqual([[0, 1], [2]]);
    expect(state.tensors.map((t) => [t.name, t.size, !!t.gradAvg, !!t.momentumBuffer])).toEqual([
      ['w0', 5, false, true], ['w1', 64, false, true], ['w2', 3, true, true],
    ]);
  });

  it('returns copies and loads copies: later writes on either side change nothing', async () => {
    const specs = makeSpecs();
    const optimizer = new ReferenceRMSProp(specs, { momentum: 0.9 });
    run(optimizer, specs, 0, 2);
    const saved = await optimizer.stateDict();
    const snapshot = bits(saved.tensors[0]!.squareAvg);
    run(optimizer, specs, 2, 3);
    expect(bits(saved.tensors[0]!.squareAvg)).toEqual(snapshot); // not aliased to the live state
    optimizer.loadStateDict(saved);
    saved.tensors[0]!.squareAvg.fill(123);
    expect(bits((await optimizer.stateDict()).tensors[0]!.squareAvg)).toEqual(snapshot);
  });

  describe('a mismatched state throws and leaves params and state untouched', () => {
    const mutations: [string, (s: RMSPropState) => unknown, RegExp][] = [
      ['another size', (s) => ({ ...s, tensors: s.tensors.map((t, i) => (i === 1 ? { ...t, size: 63, squareAvg: t.squareAvg.subarray(1) } : t)) }), /63 elements/],
      ['another name', (s) => ({ ...s, tensors: s.tensors.map((t, i) => (i === 0 ? { ...t, name: 'bias' } : t)) }), /named 'bias'/],
      ['other options', (s) => ({ ...s, groups: s.groups.map((g, i) => (i === 1 ? { ...g, options: { ...g.options, centered: false } } : g)) }), /centered/],
      ['another momentum', (s) => ({ ...s, groups: s.groups.map((g) => ({ ...g, options: { ...g.options, momentum: 0.5 } })) }), /momentum/],
      ['fewer groups', (s) => ({ ...s, groups: s.groups.slice(0, 1) }), /param groups/],
      ['fewer tensors', (s) => ({ ...s, tensors: s.tensors.slice(0, 2) }), /tensors/],
      ['a missing slot', (s) => ({ ...s, tensors: s.tensors.map((t, i) => (i === 2 ? { ...t, gradAvg: undefined } : t)) }), /gradAvg/],
      ['a short slot', (s) => ({ ...s, tensors: s.tensors.map((t, i) => (i === 1 ? { ...t, momentumBuffer: t.momentumBuffer!.subarray(1) } : t)) }), /momentumBuffer has 63/],
      ['a bad saved lr', (s) => ({ ...s, groups: s.groups.map((g) => ({ ...g, options: { ...g.options, lr: -1 } })) }), /saved lr/],
      ['a bad step', (s) => ({ ...s, step: -1 }), /step/],
      ['not a state', () => 'state', /stateDict\(\)/],
    ];

    it.each(mutations)('%s', async (_, mutate, message) => {
      // Two identical optimizers with 2 steps each; one is given the bad state, then both go on.
      const a = makeSpecs(), b = makeSpecs();
      const victim = new ReferenceRMSProp(makeGroups(a), base);
      const control = new ReferenceRMSProp(makeGroups(b), base);
      run(victim, a, 0, 2);
      run(control, b, 0, 2);
      const other = makeSpecs();
      const donor = new ReferenceRMSProp(makeGroups(other), base); // a state differing from the victim's
      run(donor, other, 10, 13);
      donor.lr = 0.5;
      const bad = mutate(await donor.stateDict()) as RMSPropState;
      expect(() => victim.loadStateDict(bad)).toThrow(message);
      expect(victim.stepCount).toBe(2);
      expect(victim.lr).toBe(control.lr);
      expect(await victim.stateDict()).toEqual(await control.stateDict());
      const got = run(victim, a, 2, 4), want = run(control, b, 2, 4);
      got.forEach((step, s) => step.forEach((p, i) => expect(bits(p)).toEqual(bits(want[s]![i]!))));
    });

    it('the unmutated donor state loads (the mutations above are what fails)', async () => {
      const other = makeSpecs();
      const donor = new ReferenceRMSProp(makeGroups(other), base);
      run(donor, other, 10, 13);
      const victim = new ReferenceRMSProp(makeGroups(makeSpecs()), base);
      victim.loadStateDict(await donor.stateDict());
      expect(victim.stepCount).toBe(3);
    });
  });
});

describe('constructor checks', () => {
  const grad = () => new Float32Array(4);
  const spec = (n = 4): ReferenceParamSpec => ({ param: new Float32Array(n), grad: new Float32Array(n) });

  it('an empty list', () => {
    expect(() => new ReferenceRMSProp([])).toThrow(RangeError);
    expect(() => new ReferenceRMSProp([])).toThrow(/params is empty/);
    expect(() => new ReferenceRMSProp([{ params: [] }])).toThrow(/params\[0\]\.params is empty/);
  });

  it('not an array, or options that are not options', () => {
    expect(() => new ReferenceRMSProp(spec() as never)).toThrow(TypeError);
    expect(() => new ReferenceRMSProp([spec()], { learningRate: 0.1 } as never)).toThrow(/this library calls it 'lr'/);
  });

  it('grad and param of different lengths', () => {
    expect(() => new ReferenceRMSProp([{ param: new Float32Array(4), grad: new Float32Array(5), name: 'fc' }])).toThrow(RangeError);
    expect(() => new ReferenceRMSProp([{ param: new Float32Array(4), grad: new Float32Array(5), name: 'fc' }])).toThrow(/'fc'.*5 elements.*4/);
  });

  it('not Float32Arrays, empty ones, a bad name', () => {
    expect(() => new ReferenceRMSProp([{ param: new Float64Array(4) as never, grad: grad() }])).toThrow(/params\[0\]\.param must be a Float32Array/);
    expect(() => new ReferenceRMSProp([{ param: [1, 2, 3, 4] as never, grad: grad() }])).toThrow(TypeError);
    expect(() => new ReferenceRMSProp([{ param: new Float32Array(0), grad: new Float32Array(0) }])).toThrow(/empty/);
    expect(() => new ReferenceRMSProp([{ ...spec(), name: 7 as never }])).toThrow(/name must be a string/);
    expect(() => new ReferenceRMSProp([null as never])).toThrow(TypeError);
  });

  it('the same parameter twice', () => {
    const w = new Float32Array(4);
    const make = () => new ReferenceRMSProp([{ param: w, grad: grad(), name: 'a' }, { param: w, grad: grad(), name: 'b' }]);
    expect(make).toThrow(RangeError);
    expect(make).toThrow("'b' repeats the parameter 'a'");
  });

  it('parameters overlapping in one Float32Array', () => {
    const buffer = new Float32Array(16);
    const make = () => new ReferenceRMSProp([
      { param: buffer.subarray(0, 8), grad: new Float32Array(8), name: 'a' },
      { param: buffer.subarray(4, 12), grad: new Float32Array(8), name: 'b' },
    ]);
    expect(make).toThrow("'b' overlaps the parameter 'a'");
  });

  it("a parameter overlapping another's gradient, as subarrays of one Float32Array", () => {
    const buffer = new Float32Array(20);
    const make = () => new ReferenceRMSProp([
      { param: buffer.subarray(0, 10), grad: new Float32Array(10), name: 'a' },
      { param: new Float32Array(10), grad: buffer.subarray(5, 15), name: 'b' },
    ]);
    expect(make).toThrow(RangeError);
    expect(make).toThrow("the gradient of 'b' overlaps the parameter 'a'");
    // Its own gradient overlapping its parameter is caught too.
    expect(() => new ReferenceRMSProp([{ param: buffer.subarray(0, 10), grad: buffer.subarray(9, 19), name: 'c' }])).toThrow(/gradient of 'c' overlaps the parameter 'c'/);
  });

  it('adjacent subarrays, and gradients shared between parameters, are fine', () => {
    const buffer = new Float32Array(20), shared = new Float32Array(10);
    const optimizer = new ReferenceRMSProp([
      { param: buffer.subarray(0, 10), grad: shared },
      { param: buffer.subarray(10, 20), grad: shared },
    ]);
    shared.fill(1);
    optimizer.step();
    expect(buffer.every((x) => x === buffer[0] && x < 0)).toBe(true);
  });

  it('groups mixed with single params', () => {
    const make = () => new ReferenceRMSProp([{ params: [spec()] }, spec()] as never);
    expect(make).toThrow(TypeError);
    expect(make).toThrow(/mixes param groups/);
  });
});

describe('destroy', () => {
  it('makes every later call throw, and may be called twice', async () => {
    const specs = makeSpecs();
    const optimizer = new ReferenceRMSProp(specs);
    optimizer.step();
    const saved = await optimizer.stateDict();
    optimizer.destroy();
    expect(() => optimizer.destroy()).not.toThrow();
    expect(() => optimizer.step()).toThrow(/step\(\) after destroy\(\)/);
    await expect(optimizer.stateDict()).rejects.toThrow(/after destroy/);
    await expect(optimizer.readParams()).rejects.toThrow(/after destroy/);
    expect(() => optimizer.loadStateDict(saved)).toThrow(/after destroy/);
  });
});

describe('readParams', () => {
  it('readParams returns copies in the order given (groups flattened)', async () => {
    const specs = makeSpecs();
    const optimizer = new ReferenceRMSProp(makeGroups(specs), base);
    run(optimizer, specs, 0, 1);
    const read = await optimizer.readParams();
    expect(read.map(bits)).toEqual(specs.map((s) => bits(s.param)));
    read[0]!.fill(0);
    expect(specs[0]!.param.some((x) => x !== 0)).toBe(true);
  });
});
