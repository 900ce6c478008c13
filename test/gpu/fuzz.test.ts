/**
 * Randomized tests (fast-check), with a fixed seed unless FC_SEED is set (the seed is printed on failure):
 * (a) random options (every field, edge values included), tensor counts and sizes (1 to 5000),
 *     binding offsets (multiples of 256) and step counts (1 to 5): the GPU equals the CPU reference
 *     at the adapter's tolerance (bit for bit on SwiftShader and lavapipe), parameters and state, and
 *     the bytes around each binding stay untouched;
 * (b) random bad input (hyperparameters, sizes, offsets, usages, mismatched state dicts): a TypeError
 *     or RangeError whose message names the culprit, with no GPU work started and nothing changed.
 */
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { OPTION_NAMES } from '../../src/rule/options.js';
import { RMSProp, type RMSPropOptions, type RMSPropState } from '../../src/index.js';
import {
  NO_GPU_WORK,
  attemptWatchingGpuWork,
  bits,
  cpuTwin,
  expectBitExact,
  expectMatchesTwin,
  gpuTest,
  randomGrads,
  randomParams,
  readBytes,
  rng,
  upload,
  useDevice,
  write,
  type Placed,
} from './harness.js';

const gpu = useDevice();

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 0x5eed2026;
if (!Number.isSafeInteger(SEED)) throw new RangeError(`FC_SEED must be an integer, got '${process.env.FC_SEED}'.`);

/** Runs a fast-check property with the file's seed, and names that seed if it fails. */
async function check<T>(property: fc.IAsyncPropertyWithHooks<T>, numRuns: number): Promise<void> {
  try {
    // endOnFailure: report the first counterexample with its seed rather than shrink on the GPU.
    await fc.assert(property, { seed: SEED, numRuns, endOnFailure: true });
  } catch (e) {
    console.error(`fuzz.test.ts failed with seed ${SEED}: rerun with FC_SEED=${SEED} npx vitest run --project gpu test/gpu/fuzz.test.ts`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// (a) random valid cases: GPU against the reference
// ---------------------------------------------------------------------------------------------

/**
 * A number from a range, or one of its edge values (more often than a uniform draw would give them).
 * The ranges start at 1e-6, not at 0 (0 is an edge where it is valid): a value such as lr = 1e-300
 * drives the arithmetic into f32's subnormal range, which WGSL lets a GPU flush to zero (SwiftShader
 * does, the reference does not), so such a case has no bit-exact twin.
 */
const edgy = (edges: number[], min: number, max: number) => fc.oneof(fc.constantFrom(...edges), fc.double({ min, max, noNaN: true }));

const optionsArb: fc.Arbitrary<RMSPropOptions> = fc.record({
  lr: edgy([0, 1e-6, 0.01, 1], 1e-6, 1),
  alpha: edgy([0, 1, 0.9, 0.99], 1e-6, 1),
  eps: edgy([1e-10, 1e-8, 1e-7, 1], 1e-10, 1),
  epsMode: fc.constantFrom('outside' as const, 'inside' as const),
  momentum: edgy([0, 0.5, 0.9, 0.99], 1e-6, 0.99),
  lrInMomentum: fc.boolean(),
  centered: fc.boolean(),
  weightDecay: edgy([0, 1e-4, 0.1], 1e-6, 0.1),
  maximize: fc.boolean(),
  initialScale: edgy([0, 1], 1e-6, 2),
  nesterov: fc.boolean(),
  weightDecayMode: fc.constantFrom('l2' as const, 'decoupled' as const),
  biasCorrection: fc.boolean(),
  skipNonFinite: fc.boolean(),
  // Not below 1e-3: a tinier maximum norm scales these gradients (1e-3 to 1e3) into f32's subnormal
  // range, which WGSL lets a GPU flush to zero (SwiftShader does; the reference does not).
  clipGradNorm: edgy([0, 0, 1e-3, 1], 1e-3, 10),
  // 16-bit gradients and loss scales have their own tests (extensions.test.ts): these cases feed f32 gradients.
  gradDtype: fc.constant('f32' as const),
  lossScale: fc.constant(1),
  // 16-bit parameters have their own tests (mixed-precision.test.ts).
  paramDtype: fc.constant('f32' as const),
  masterWeights: fc.boolean(), // no effect with f32 parameters
  // 8-bit state has its own tests (blockwise8.test.ts).
  stateDtype: fc.constant('f32' as const),
}).map((o) => ({
  ...o,
  // Combinations the options refuse (nesterov needs momentum; biasCorrection needs alpha < 1 and no skipNonFinite).
  nesterov: o.nesterov && o.momentum > 0,
  biasCorrection: o.biasCorrection && !o.skipNonFinite && o.alpha < 1,
}));

const tensorArb = fc.record({
  size: fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.constantFrom(1, 2, 3, 4, 5, 63, 64, 65, 1023, 1024, 1025)),
  // Binding offsets, in units of 256 bytes, of the parameter and the gradient in buffers with room around them.
  paramAt: fc.integer({ min: 0, max: 4 }),
  gradAt: fc.integer({ min: 0, max: 4 }),
});

const caseArb = fc.record({
  options: optionsArb,
  tensors: fc.array(tensorArb, { minLength: 1, maxLength: 3 }),
  steps: fc.integer({ min: 1, max: 5 }),
  /** A second lr, set before the last step (null: unchanged). */
  lastLr: fc.option(edgy([0, 0.1], 1e-6, 1), { nil: null }),
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
  /** With skipNonFinite: a NaN or infinity planted in one gradient of one step (both sides must skip it). */
  poison: fc.option(fc.record({ step: fc.integer({ min: 0, max: 4 }), tensor: fc.integer({ min: 0, max: 2 }), value: fc.constantFrom(NaN, Infinity, -Infinity) }), { nil: null }),
});

const FILL = 0xdeadbeef;

describe('random valid cases: the GPU equals the CPU reference', () => {
  gpuTest('25 random cases of options, sizes, binding offsets and steps', gpu, async (device) => {
    const align = device.limits.minStorageBufferOffsetAlignment;
    expect(256 % align).toBe(0); // every offset the cases use is aligned on this device
    await check(fc.asyncProperty(caseArb, async (c) => {
      const random = rng(c.seed);
      const placed: { param: Placed; grad: Placed; cpuParam: Float32Array; cpuGrad: Float32Array }[] = c.tensors.map((t, i) => {
        const values = randomParams(t.size, random);
        const bufferSize = (t.paramAt + 2) * 256 + t.size * 4;
        return {
          param: upload(device, values, { offset: t.paramAt * 256, bufferSize, fill: FILL, label: `fuzz.param[${i}]` }),
          grad: upload(device, new Float32Array(t.size), { offset: t.gradAt * 256, bufferSize: (t.gradAt + 2) * 256 + t.size * 4, fill: FILL, label: `fuzz.grad[${i}]` }),
          cpuParam: values.slice(),
          cpuGrad: new Float32Array(t.size),
        };
      });
      const names = c.tensors.map((t, i) => `t${i}.size${t.size}`);
      const opt = new RMSProp(device, placed.map((p, i) => ({ name: names[i], param: p.param.binding, grad: p.grad.binding })), c.options);
      const cpu = cpuTwin(placed.map((p, i) => ({ name: names[i], param: p.cpuParam, grad: p.cpuGrad })), c.options);
      try {
        for (let s = 0; s < c.steps; s++) {
          if (s === c.steps - 1 && c.lastLr !== null) opt.lr = cpu.lr = c.lastLr;
          for (const [i, p] of placed.entries()) {
            const g = randomGrads(p.cpuGrad.length, random);
            if (c.options.skipNonFinite && c.poison?.step === s && c.poison.tensor % placed.length === i) g[g.length >> 1] = c.poison.value;
            p.cpuGrad.set(g);
            write(device, p.grad.buffer, p.grad.binding.offset, g);
          }
          opt.step();
          cpu.step();
        }
        const what = `case ${JSON.stringify(c)}`;
        // A case whose reference overflowed f32 (tiny eps, lr 1, alpha 1: parameters past 1e38) is
        // discarded: past an overflow, WGSL leaves max() of a NaN to the implementation (the
        // centered clamp max(v - m*m, 0)), so no CPU twin can predict the GPU's NaNs bit for bit.
        const cpuState = await cpu.stateDict();
        const finite = (x: Float32Array | undefined) => x === undefined || x.every(Number.isFinite);
        fc.pre(placed.every((p) => finite(p.cpuParam)) && cpuState.tensors.every((t) => finite(t.squareAvg) && finite(t.gradAvg) && finite(t.momentumBuffer)));
        // Parameters and every state slot, at the adapter's tolerance.
        await expectMatchesTwin(opt, cpu, what);
        const [gs, cs] = [await opt.stateDict(), cpuState];
        expect(gs.step).toBe(cs.step);
        expect(gs.skippedSteps, `${what}: skipped steps`).toBe(cs.skippedSteps);
        expect(gs.groups).toEqual(cs.groups);
        // The bytes around each binding are the caller's: untouched.
        for (const [i, p] of placed.entries()) {
          for (const b of [p.param, p.grad]) {
            const all = new Uint32Array(await readBytes(device, b.buffer));
            const [from, to] = [b.binding.offset / 4, (b.binding.offset + b.binding.size) / 4];
            const outside = [...all.subarray(0, from), ...all.subarray(to)];
            expect(outside.every((x) => x === FILL), `${what}: bytes around tensor ${i}'s binding changed`).toBe(true);
          }
        }
      } finally {
        opt.destroy();
        for (const p of placed) { p.param.buffer.destroy(); p.grad.buffer.destroy(); }
      }
    }), 25);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// (b) random bad input: a clear TypeError or RangeError, nothing changed
// ---------------------------------------------------------------------------------------------

/** Values that each option must refuse, with the error type. */
const BAD_VALUES: Record<keyof RMSPropOptions, fc.Arbitrary<[unknown, typeof TypeError | typeof RangeError]>> = (() => {
  const range = (...xs: number[]) => fc.constantFrom(...xs).map((x): [unknown, typeof RangeError] => [x, RangeError]);
  const type = (...xs: unknown[]) => fc.constantFrom(...xs).map((x): [unknown, typeof TypeError] => [x, TypeError]);
  const nonFinite = [NaN, Infinity, -Infinity];
  const notNumber = type('0.1', null, true, {}, [0.1]);
  const notBoolean = type(0, 1, 'true', null, {});
  return {
    lr: fc.oneof(range(...nonFinite, -1e-9, -1), fc.double({ max: -Number.MIN_VALUE, noNaN: true, noDefaultInfinity: true }).map((x): [unknown, typeof RangeError] => [x, RangeError]), notNumber),
    alpha: fc.oneof(range(...nonFinite, -0.01, 1.0000001, 2), fc.double({ min: 1.0000001, max: 1e6, noNaN: true }).map((x): [unknown, typeof RangeError] => [x, RangeError]), notNumber),
    eps: fc.oneof(range(...nonFinite, 0, -0, -1e-8), notNumber),
    epsMode: type('middle', 'Outside', '', null, 1, true),
    momentum: fc.oneof(range(...nonFinite, -0.9, -1e-30), notNumber),
    lrInMomentum: notBoolean,
    centered: notBoolean,
    weightDecay: fc.oneof(range(...nonFinite, -0.01), notNumber),
    maximize: notBoolean,
    initialScale: fc.oneof(range(...nonFinite, -1), notNumber),
    nesterov: notBoolean,
    weightDecayMode: type('L2', 'adamw', '', null, 1, true),
    biasCorrection: notBoolean,
    skipNonFinite: notBoolean,
    clipGradNorm: fc.oneof(range(...nonFinite, -1, -1e-30), notNumber),
    gradDtype: type('f64', 'F16', '', null, 16),
    lossScale: fc.oneof(range(...nonFinite, 0, -1), notNumber),
    paramDtype: type('f64', 'F16', '', null, 16),
    masterWeights: notBoolean,
    stateDtype: type('int8', 'f16', '', null, 8),
  };
})();

const badOptionArb = fc.constantFrom(...OPTION_NAMES).chain((key) => BAD_VALUES[key].map(([value, type]) => ({ key, value, type })));

type Bad =
  | { kind: 'option'; where: 'options' | 'group' | 'setter'; key: keyof RMSPropOptions; value: unknown; type: typeof TypeError | typeof RangeError }
  | { kind: 'unknown option'; key: string }
  | { kind: 'size'; bytes: number }
  | { kind: 'grad size'; delta: number }
  | { kind: 'offset'; offset: number }
  | { kind: 'usage'; usage: number; on: 'param' | 'grad' }
  | { kind: 'state'; mutation: number; index: number };

const badArb: fc.Arbitrary<Bad> = fc.oneof(
  fc.record({ where: fc.constantFrom('options' as const, 'group' as const, 'setter' as const), bad: badOptionArb })
    .filter(({ where, bad }) => where !== 'setter' || bad.key === 'lr')
    .map(({ where, bad }): Bad => ({ kind: 'option', where, ...bad })),
  // Keys of Object.prototype ('toString', 'constructor', ...) are drawn often: they once slipped through.
  fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom(...Object.getOwnPropertyNames(Object.prototype)))
    .filter((k) => !(OPTION_NAMES as string[]).includes(k) && k !== 'params')
    .map((key): Bad => ({ kind: 'unknown option', key })),
  // A byte size that is not whole f32s, or zero.
  fc.oneof(fc.integer({ min: 1, max: 4000 }).filter((b) => b % 4 !== 0), fc.constant(0)).map((bytes): Bad => ({ kind: 'size', bytes })),
  fc.integer({ min: -40, max: 40 }).filter((d) => d !== 0).map((delta): Bad => ({ kind: 'grad size', delta: delta * 4 })),
  // An offset that is not a multiple of 256, or past the buffer's end.
  fc.oneof(fc.integer({ min: 1, max: 2048 }).filter((o) => o % 256 !== 0), fc.integer({ min: 20, max: 100 }).map((k) => k * 256))
    .map((offset): Bad => ({ kind: 'offset', offset })),
  fc.record({ usage: fc.constantFrom(0x04 | 0x08, 0x08, 0x40 | 0x08), on: fc.constantFrom('param' as const, 'grad' as const) })
    .map(({ usage, on }): Bad => ({ kind: 'usage', usage, on })),
  fc.record({ mutation: fc.integer({ min: 0, max: 12 }), index: fc.integer({ min: 0, max: 1 }) }).map(({ mutation, index }): Bad => ({ kind: 'state', mutation, index })),
);

/** A mutation of a valid state dict that loadStateDict must refuse, and what the message must name. */
function mutate(state: RMSPropState, mutation: number, index: number): { state: unknown; names: RegExp } {
  const t = state.tensors[index]!;
  const tensors = (change: object) => state.tensors.map((x, i) => (i === index ? { ...x, ...change } : x));
  const group = (change: object) => [{ ...state.groups[0]!, options: { ...state.groups[0]!.options, ...change } }];
  switch (mutation) {
    case 0: return { state: { ...state, tensors: tensors({ name: `${t.name}x` }) }, names: new RegExp(`'${t.name}x'`) };
    case 1: return { state: { ...state, tensors: tensors({ size: t.size + 1 }) }, names: new RegExp(`tensor ${index} .*${t.size + 1}`) };
    case 2: return { state: { ...state, tensors: tensors({ squareAvg: t.squareAvg.subarray(1) }) }, names: /squareAvg/ };
    case 3: return { state: { ...state, tensors: tensors({ momentumBuffer: undefined }) }, names: /momentumBuffer/ };
    case 4: return { state: { ...state, tensors: tensors({ gradAvg: new Float64Array(t.size) }) }, names: /gradAvg/ };
    case 5: return { state: { ...state, groups: group({ alpha: 0.5 }) }, names: /alpha/ };
    case 6: return { state: { ...state, groups: group({ centered: false }) }, names: /centered/ };
    case 7: case 8: case 9: case 10: return { state: { ...state, step: [-1, 1.5, NaN, '3'][mutation - 7] }, names: /state\.step must be an integer >= 0/ };
    case 11: return { state: { ...state, groups: group({ lr: -1 }) }, names: /group 0's saved lr is -1/ };
    default: return { state: { ...state, tensors: state.tensors.slice(0, 1) }, names: /tensors/ };
  }
}

describe('random bad input: a clear TypeError or RangeError, nothing changed', () => {
  gpuTest('60 random mistakes', gpu, async (device) => {
    const SIZE = 1027;
    const values = [randomParams(SIZE, rng(1)), randomParams(5, rng(2))];
    const params = values.map((v, i) => upload(device, v, { label: `fuzz.victim.w${i}` }));
    const grads = values.map((v, i) => upload(device, randomGrads(v.length, rng(3 + i)), { label: `fuzz.victim.w${i}.grad` }));
    const specs = () => params.map((p, i) => ({ name: `w${i}`, param: p.buffer, grad: grads[i]!.buffer }));
    const options = { centered: true, momentum: 0.9, lr: 0.02 };
    const victim = new RMSProp(device, specs(), options);
    victim.step();
    victim.step();
    const before = { state: await victim.stateDict(), params: await victim.readParams() };
    const spare = upload(device, new Float32Array(SIZE + 64), { label: 'fuzz.spare' });

    await check(fc.asyncProperty(badArb, async (bad) => {
      let attempt: () => unknown, type: (typeof TypeError | typeof RangeError)[] = [TypeError, RangeError], names: RegExp;
      const made: GPUBuffer[] = [];
      switch (bad.kind) {
        case 'option':
          type = [bad.type];
          if (bad.where === 'setter') {
            attempt = () => { victim.lr = bad.value as number; };
            names = /^lr /;
          } else if (bad.where === 'options') {
            attempt = () => new RMSProp(device, specs(), { ...options, [bad.key]: bad.value });
            names = new RegExp(`options\\.${bad.key}`);
          } else {
            attempt = () => new RMSProp(device, [{ params: specs().slice(0, 1) }, { params: specs().slice(1), [bad.key]: bad.value }] as never, options);
            names = new RegExp(`params\\[1\\]\\.${bad.key}`);
          }
          break;
        case 'unknown option':
          type = [TypeError];
          attempt = () => new RMSProp(device, specs(), { [bad.key]: 1 } as never);
          names = new RegExp(`options\\.${bad.key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not an RMSProp option`);
          break;
        case 'size':
          type = [RangeError];
          attempt = () => new RMSProp(device, [{ name: 'odd', param: { buffer: spare.buffer, offset: 0, size: bad.bytes }, grad: { buffer: spare.buffer, offset: 0, size: bad.bytes } }]);
          names = /params\[0\] \('odd'\)\.(param|grad) covers/;
          break;
        case 'grad size':
          type = [RangeError];
          attempt = () => new RMSProp(device, [{ name: 'mismatch', param: params[0]!.buffer, grad: { buffer: spare.buffer, offset: 0, size: SIZE * 4 + bad.delta } }]);
          names = new RegExp(`params\\[0\\] \\('mismatch'\\): grad covers ${SIZE * 4 + bad.delta} bytes but param covers ${SIZE * 4}`);
          break;
        case 'offset':
          // Aligned offsets inside the buffer are valid on a device whose alignment is below 256.
          fc.pre(bad.offset % device.limits.minStorageBufferOffsetAlignment !== 0 || bad.offset + 256 > spare.buffer.size);
          type = [RangeError];
          attempt = () => new RMSProp(device, [{ name: 'shifted', param: { buffer: spare.buffer, offset: bad.offset, size: 256 }, grad: grads[1]!.buffer }]);
          names = /params\[0\] \('shifted'\)\.param\.(offset|size)/;
          break;
        case 'usage': {
          const plain = device.createBuffer({ label: 'fuzz.no-storage', size: SIZE * 4, usage: bad.usage });
          made.push(plain);
          type = [TypeError];
          const spec = bad.on === 'param' ? { name: 'plain', param: plain, grad: grads[0]!.buffer } : { name: 'plain', param: params[0]!.buffer, grad: plain };
          attempt = () => new RMSProp(device, [spec]);
          names = new RegExp(`params\\[0\\] \\('plain'\\)\\.${bad.on}: buffer \\('fuzz.no-storage'\\) lacks GPUBufferUsage\\.STORAGE`);
          break;
        }
        case 'state': {
          const m = mutate(before.state, bad.mutation, bad.index);
          attempt = () => victim.loadStateDict(m.state as RMSPropState);
          names = m.names;
          break;
        }
      }
      const { error, calls } = attemptWatchingGpuWork(device, attempt);
      made.forEach((b) => b.destroy());
      const what = JSON.stringify(bad, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
      expect(type.some((t) => error instanceof t), `${what}: threw ${String(error)}`).toBe(true);
      expect((error as Error).message, what).toMatch(names);
      expect(calls, `${what}: GPU work before the error`).toEqual(NO_GPU_WORK);
      // Nothing changed: the victim's step, lr, state and parameters, bit for bit.
      expect(victim.stepCount).toBe(2);
      expect(victim.lr).toBe(0.02);
      const [state, now] = [await victim.stateDict(), await victim.readParams()];
      expect(state.groups).toEqual(before.state.groups);
      state.tensors.forEach((t, i) => {
        for (const slot of ['squareAvg', 'gradAvg', 'momentumBuffer'] as const) expectBitExact(bits(t[slot]!), bits(before.state.tensors[i]![slot]!), `${what}: w${i}.${slot}`);
      });
      now.forEach((p, i) => expectBitExact(p, before.params[i]!, `${what}: w${i}`));
    }), 60);

    victim.destroy();
    for (const p of [...params, ...grads, spare]) p.buffer.destroy();
  }, 120_000);
});
