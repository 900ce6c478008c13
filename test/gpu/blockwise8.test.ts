/**
 * 8-bit blockwise state (stateDtype 'int8-blockwise', shaders/rmsprop.wgsl stepBlockwise8) against its
 * CPU twin (ReferenceRMSProp over src/rule/blockwise8.ts), rounding as this adapter's fma does:
 * parameters, codes and absmax after every step, bit for bit on the adapters measured exact
 * (SwiftShader, lavapipe). Elsewhere (and with GPU_TOLERANCE=bound) each step is checked from a state
 * both sides share, through the check page's comparison (CheckedReference): parameters and each
 * block's absmax within the WGSL bound of the f32 rule (demo/check/bound.ts), each code equal to the
 * twin's, or its neighbour where the twin's v / absmax lies within its bound of the midpoint between
 * them (demo/check/compare.ts compareCodes; docs/tolerance.md, "8-bit state").
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import {
  ParamArena, RMSProp, ReferenceRMSProp, convertStateDict,
  type RMSPropConfig, type RMSPropState,
} from '../../src/index.js';
import { CheckedReference } from '../../demo/check/checked-reference.js';
import { forceBlockwise8Layout } from '../../src/gpu/blockwise8-layout.js';
import {
  attemptWatchingGpuWork, bits, gpuTest, MULTIPLY_ADD, NO_GPU_WORK, randomGrads, REDUCE_PARTIALS, randomParams, rng,
  TOLERANCE, upload,
  useDevice, withErrorScopes, write, type Placed,
} from './harness.js';

const gpu = useDevice();

/** 8-bit tensors (one block exactly, a 3-element last block, a last block of 1, many blocks) and f32 ones below 4096. */
const SIZES = [4096, 4099, 4353, 1000, 3, 20_000];
const STEPS = 8;

/** A GPU optimizer and its twin over the same values; the gradients are written to both before each step. */
function setup(device: GPUDevice, sizes: readonly number[], options: RMSPropConfig, seed: number) {
  const random = rng(seed);
  const cpu = sizes.map((n) => ({ param: randomParams(n, random), grad: new Float32Array(n) }));
  const placed: Placed[][] = cpu.map((t, i) => [
    upload(device, t.param, { label: `test.blockwise8.param[${i}]` }),
    upload(device, t.grad, { label: `test.blockwise8.grad[${i}]` }),
  ]);
  const opt = new RMSProp(device, placed.map(([p, g], i) => ({ name: `t${i}`, param: p!.binding, grad: g!.binding })), options);
  const specs = cpu.map((t, i) => ({ name: `t${i}`, ...t }));
  const twin = new CheckedReference(specs, options, { multiplyAdd: MULTIPLY_ADD, reducePartials: REDUCE_PARTIALS });
  const setGrads = (scale = 1) => cpu.forEach((t, i) => {
    t.grad.set(randomGrads(t.param.length, random).map((g) => g * scale));
    write(device, placed[i]![1]!.buffer, 0, t.grad);
  });
  const destroy = () => { opt.destroy(); placed.flat().forEach((p) => p.buffer.destroy()); };
  return { cpu, placed, opt, twin, setGrads, destroy, random };
}

/** Expects two arrays equal element for element (as bits for floats), naming the first difference. */
function expectSame(a: Uint8Array | Uint32Array | undefined, b: Uint8Array | Uint32Array | undefined, what: string): void {
  expect(a?.length, `${what}: length`).toBe(b?.length);
  if (!a || !b) return;
  let at = -1;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) { at = k; break; }
  expect(at < 0 ? 'equal' : `[${at}]: ${a[at]} (GPU) vs ${b[at]} (CPU)`, what).toBe('equal');
}

/** Parameters, codes, absmax and f32 state of a GPU optimizer and its twin, bit for bit. */
async function expectSameBits(
  opt: RMSProp, twin: { readParams(): Promise<Float32Array[]>; stateDict(): Promise<RMSPropState> }, what: string,
): Promise<void> {
  const [gp, cp, gs, cs] = [await opt.readParams(), await twin.readParams(), await opt.stateDict(), await twin.stateDict()];
  gp.forEach((p, i) => expectSame(bits(p), bits(cp[i]!), `${what}: tensor ${i} parameters`));
  gs.tensors.forEach((t, i) => {
    const c = cs.tensors[i]!;
    if (c.codes) {
      expectSame(t.codes, c.codes, `${what}: tensor ${i} codes`);
      expectSame(bits(t.absmax!), bits(c.absmax!), `${what}: tensor ${i} absmax`);
    } else {
      expect(t.codes, `${what}: tensor ${i} has f32 state`).toBeUndefined();
    }
    expectSame(bits(t.squareAvg), bits(c.squareAvg), `${what}: tensor ${i} squareAvg`);
  });
}

/**
 * One step from a state both sides hold, at the WGSL bound (adapters not measured exact): the check
 * page's own comparison (demo/check/checked-reference.ts `compareWith`): parameters and each block's
 * absmax within the bound, each code the twin's or its neighbour where the twin's v / absmax lies
 * within its bound of their midpoint (docs/tolerance.md, "8-bit state").
 */
async function expectWithinBound(opt: RMSProp, twin: CheckedReference, what: string): Promise<void> {
  const r = await twin.compareWith(opt, TOLERANCE, { allowNonFinite: false });
  expect(r.worst.failures, what).toEqual([]);
}

/** Steps GPU and twin together with fresh gradients, comparing after each at the adapter's tolerance. */
async function stepAndCompare(s: ReturnType<typeof setup>, steps: number, what: string, scale = 1): Promise<void> {
  for (let k = 0; k < steps; k++) {
    s.setGrads(scale);
    s.opt.step();
    s.twin.step();
    if (TOLERANCE.kind === 'exact') {
      await expectSameBits(s.opt, s.twin, `${what}, step ${k + 1}`);
    } else {
      await expectWithinBound(s.opt, s.twin, `${what}, step ${k + 1}`);
      // The next step starts from the same state on both sides.
      s.twin.loadStateDict(await s.opt.stateDict());
      const params = await s.opt.readParams();
      s.cpu.forEach((t, i) => t.param.set(params[i]!));
    }
  }
}

const VARIANTS: [string, RMSPropConfig][] = [
  ['plain (PyTorch defaults)', {}],
  ['weight decay, maximize, eps inside, alpha 0.9', { weightDecay: 0.01, maximize: true, epsMode: 'inside', alpha: 0.9, lr: 1e-3 }],
  ['decoupled decay, bias correction', { weightDecay: 0.1, weightDecayMode: 'decoupled', biasCorrection: true, lr: 1e-3 }],
  ['TF1 (v starts at 1, eps inside)', { lr: 1e-3, alpha: 0.9, eps: 1e-10, epsMode: 'inside', initialScale: 1 }],
  ['clipping and a loss scale', { clipGradNorm: 1, lossScale: 1024 }],
];

// Both layouts of the 8-bit step (src/gpu/blockwise8-layout.ts) on this adapter, whichever it would pick:
// a GPU's ('workgroup') and a CPU adapter's ('lanes') compute the same values.
describe.each(['workgroup', 'lanes'] as const)('the %s layout', (layout) => {
  beforeAll(() => forceBlockwise8Layout(gpu.device, layout));
  afterAll(() => forceBlockwise8Layout(gpu.device, undefined));

  describe('stateDtype int8-blockwise on the GPU', () => {
    for (const [name, options] of VARIANTS) {
      gpuTest(`${name}: the twin's parameters, codes and absmax after every step`, gpu, async (device) => {
        const s = setup(device, SIZES, { ...options, stateDtype: 'int8-blockwise' }, 7);
        try {
          await stepAndCompare(s, STEPS, name);
        } finally {
          s.destroy();
        }
      }, 120_000);
    }
  });

  describe('stateDtype int8-blockwise: layouts, checkpoints, refusals', () => {
    gpuTest('a ParamArena: 8-bit tensors are dispatched on their own, the small ones together, as the twin', gpu, async (device) => {
      const sizes = [100, 5000, 64, 4096, 7];
      const options: RMSPropConfig = { stateDtype: 'int8-blockwise', lr: 1e-3 };
      const random = rng(3);
      const arena = new ParamArena(device, sizes.map((size, i) => ({ name: `t${i}`, size })), 'test.blockwise8.arena');
      const cpu = sizes.map((n) => ({ param: randomParams(n, random), grad: new Float32Array(n) }));
      arena.tensors.forEach((t, i) => write(device, arena.params, t.offset, cpu[i]!.param));
      const opt = new RMSProp(device, arena.specs(), options);
      const twin = new ReferenceRMSProp(cpu.map((t, i) => ({ name: `t${i}`, ...t })), options, { multiplyAdd: MULTIPLY_ADD, reducePartials: REDUCE_PARTIALS });
      try {
        // [t0], t1 alone, [t2], t3 alone, [t4]: five segments, one dispatch each (no tails: t1, t3's are in their
        // blocks), and the ring's countStep.
        expect(opt.dispatchesPerStep.dispatches).toBe(6);
        for (let k = 0; k < 4; k++) {
          arena.tensors.forEach((t, i) => {
            cpu[i]!.grad.set(randomGrads(t.size, random));
            write(device, arena.grads, t.offset, cpu[i]!.grad);
          });
          opt.step();
          twin.step();
          if (TOLERANCE.kind === 'exact') await expectSameBits(opt, twin, `arena, step ${k + 1}`);
        }
        const state = await opt.stateDict();
        expect(state.tensors.map((t) => t.codes !== undefined)).toEqual([false, true, false, true, false]);
      } finally {
        opt.destroy();
        arena.destroy();
      }
    }, 60_000);

    gpuTest('a state dict resumes bit for bit on a new optimizer, and the CPU twin takes it', gpu, async (device) => {
      const options: RMSPropConfig = { stateDtype: 'int8-blockwise' };
      const a = setup(device, [4099, 300, 9000], options, 21);
      const b = setup(device, [4099, 300, 9000], options, 21);
      try {
        for (let k = 0; k < 3; k++) { a.setGrads(); a.opt.step(); }
        const saved = await a.opt.stateDict();
        const params = await a.opt.readParams();
        b.placed.forEach(([p], i) => write(device, p!.buffer, 0, params[i]!));
        b.opt.loadStateDict(saved);
        const resumed = await b.opt.stateDict();
        expect(resumed.tensors.map((t) => t.codes), 'codes as saved').toEqual(saved.tensors.map((t) => t.codes));
        expect(resumed.tensors.map((t) => t.absmax && bits(t.absmax))).toEqual(saved.tensors.map((t) => t.absmax && bits(t.absmax)));
        // The same gradients on both from here: the same bits on every adapter (the same GPU arithmetic).
        for (let k = 0; k < 3; k++) {
          a.setGrads();
          a.cpu.forEach((t, i) => write(device, b.placed[i]![1]!.buffer, 0, t.grad));
          a.opt.step();
          b.opt.step();
        }
        const [pa, pb, sa, sb] = [await a.opt.readParams(), await b.opt.readParams(), await a.opt.stateDict(), await b.opt.stateDict()];
        pa.forEach((p, i) => expectSame(bits(pb[i]!), bits(p), `resumed tensor ${i} parameters`));
        sa.tensors.forEach((t, i) => {
          expectSame(sb.tensors[i]!.codes ?? bits(sb.tensors[i]!.squareAvg), t.codes ?? bits(t.squareAvg), `resumed tensor ${i} state`);
        });
        // The CPU twin loads the GPU's state and parameters and steps on as the GPU does.
        a.twin.loadStateDict(sa);
        a.cpu.forEach((t, i) => t.param.set(pa[i]!));
        await stepAndCompare(a, 2, 'after loading into the twin');
      } finally {
        a.destroy();
        b.destroy();
      }
    }, 60_000);

    gpuTest('f32 state converts explicitly: refused as it is (state untouched), loaded once converted', gpu, async (device) => {
      const f = setup(device, [5000, 200], {}, 5);
      const q = setup(device, [5000, 200], { stateDtype: 'int8-blockwise' }, 5);
      try {
        for (let k = 0; k < 2; k++) { f.setGrads(); f.opt.step(); }
        const f32State = await f.opt.stateDict();
        q.setGrads();
        q.opt.step();
        const before = await q.opt.stateDict();
        const refused = attemptWatchingGpuWork(device, () => q.opt.loadStateDict(f32State));
        expect(refused.error).toBeInstanceOf(RangeError);
        expect(String(refused.error)).toMatch(/convertStateDict/);
        expect(refused.calls).toEqual(NO_GPU_WORK);
        const after = await q.opt.stateDict();
        expectSame(after.tensors[0]!.codes, before.tensors[0]!.codes, 'codes untouched by the refused load');
        const converted = convertStateDict(f32State, 'int8-blockwise');
        q.opt.loadStateDict(converted);
        const loaded = await q.opt.stateDict();
        expectSame(loaded.tensors[0]!.codes, converted.tensors[0]!.codes, 'converted codes');
        expectSame(bits(loaded.tensors[0]!.absmax!), bits(converted.tensors[0]!.absmax!), 'converted absmax');
        expectSame(bits(loaded.tensors[1]!.squareAvg), bits(f32State.tensors[1]!.squareAvg), 'a small tensor stays f32');
        // Back to f32: the dequantized values, into an f32 optimizer.
        f.opt.loadStateDict(convertStateDict(loaded, 'f32'));
        expectSame(bits((await f.opt.stateDict()).tensors[0]!.squareAvg), bits(loaded.tensors[0]!.squareAvg), 'back to f32');
      } finally {
        f.destroy();
        q.destroy();
      }
    }, 60_000);

    gpuTest('refused options throw before any GPU work', gpu, async (device) => {
      const p = upload(device, new Float32Array(4096), { label: 'test.blockwise8.refused.param' });
      const g = upload(device, new Float32Array(4096), { label: 'test.blockwise8.refused.grad' });
      try {
        for (const extra of [{ centered: true }, { momentum: 0.9 }, { gradDtype: 'f16' as const }]) {
          const attempt = attemptWatchingGpuWork(device, () =>
            new RMSProp(device, [{ param: p.binding, grad: g.binding }], { stateDtype: 'int8-blockwise', ...extra }));
          expect(attempt.error, JSON.stringify(extra)).toBeInstanceOf(RangeError);
          expect(String(attempt.error)).toMatch(/stateDtype 'int8-blockwise' does not support/);
          expect(attempt.calls).toEqual(NO_GPU_WORK);
        }
      } finally {
        p.buffer.destroy();
        g.buffer.destroy();
      }
    });

    gpuTest('skipNonFinite: a step with a NaN gradient leaves codes, absmax and parameters as they were', gpu, async (device) => {
      const s = setup(device, [4100], { stateDtype: 'int8-blockwise', skipNonFinite: true }, 9);
      try {
        await withErrorScopes(device, async () => {
          s.setGrads();
          s.opt.step();
          const [p0, s0] = [await s.opt.readParams(), await s.opt.stateDict()];
          const g = s.cpu[0]!.grad;
          g[4097] = NaN;
          write(device, s.placed[0]![1]!.buffer, 0, g);
          s.opt.step();
          expect(await s.opt.skippedSteps()).toBe(1);
          const [p1, s1] = [await s.opt.readParams(), await s.opt.stateDict()];
          expectSame(bits(p1[0]!), bits(p0[0]!), 'parameters');
          expectSame(s1.tensors[0]!.codes, s0.tensors[0]!.codes, 'codes');
          expectSame(bits(s1.tensors[0]!.absmax!), bits(s0.tensors[0]!.absmax!), 'absmax');
        });
      } finally {
        s.destroy();
      }
    });
  });

  describe('stateDtype int8-blockwise with step({ keep })', () => {
    gpuTest('a kept 8-bit tensor keeps its parameters, codes and absmax bit for bit; the others step as the twin', gpu, async (device) => {
      const s = setup(device, [4099, 5000, 100], { stateDtype: 'int8-blockwise' }, 17);
      try {
        s.setGrads();
        s.opt.step();
        s.twin.step();
        const [p0, s0] = [await s.opt.readParams(), await s.opt.stateDict()];
        s.setGrads();
        s.opt.step(undefined, { keep: [0] });
        s.twin.step({ keep: [0] });
        const [p1, s1] = [await s.opt.readParams(), await s.opt.stateDict()];
        expectSame(bits(p1[0]!), bits(p0[0]!), 'kept parameters');
        expectSame(s1.tensors[0]!.codes, s0.tensors[0]!.codes, 'kept codes');
        expectSame(bits(s1.tensors[0]!.absmax!), bits(s0.tensors[0]!.absmax!), 'kept absmax');
        expect(s1.tensors[1]!.codes).not.toEqual(s0.tensors[1]!.codes);
        if (TOLERANCE.kind === 'exact') await expectSameBits(s.opt, s.twin, 'after a step with keep');
      } finally {
        s.destroy();
      }
    });
  });

  describe('stateDtype int8-blockwise through RMSProp.create', () => {
    gpuTest('async pipelines: one dispatch a step for a lone 8-bit tensor, the twin\'s results', gpu, async (device) => {
      const random = rng(23);
      const cpu = [{ name: 'w', param: randomParams(4099, random), grad: new Float32Array(4099) }];
      const p = upload(device, cpu[0]!.param, { label: 'test.blockwise8.create.param' });
      const g = upload(device, cpu[0]!.grad, { label: 'test.blockwise8.create.grad' });
      const options: RMSPropConfig = { stateDtype: 'int8-blockwise', lr: 1e-3 };
      const opt = await RMSProp.create(device, [{ name: 'w', param: p.binding, grad: g.binding }], options);
      const twin = new ReferenceRMSProp(cpu, options, { multiplyAdd: MULTIPLY_ADD, reducePartials: REDUCE_PARTIALS });
      try {
        expect(opt.dispatchesPerStep.dispatches, 'body and tail in one dispatch, and countStep').toBe(2);
        for (let k = 0; k < 3; k++) {
          cpu[0]!.grad.set(randomGrads(4099, random));
          write(device, g.buffer, 0, cpu[0]!.grad);
          opt.step();
          twin.step();
        }
        if (TOLERANCE.kind === 'exact') await expectSameBits(opt, twin, 'RMSProp.create');
        expect((await opt.stateDict()).tensors[0]!.codes?.length).toBe(4099);
      } finally {
        opt.destroy();
        p.buffer.destroy();
        g.buffer.destroy();
      }
    });
  });

  describe('stateDtype per param group', () => {
    gpuTest('one group in 8 bits, one in f32, other options per group: the twin\'s results', gpu, async (device) => {
      const random = rng(29);
      const cpu = [4100, 5000, 4096].map((n, i) => ({ name: `t${i}`, param: randomParams(n, random), grad: new Float32Array(n) }));
      const placed = cpu.map((t, i) => [
        upload(device, t.param, { label: `test.blockwise8.groups.param[${i}]` }),
        upload(device, t.grad, { label: `test.blockwise8.groups.grad[${i}]` }),
      ] as const);
      const spec = (i: number) => ({ name: `t${i}`, param: placed[i]![0].binding, grad: placed[i]![1].binding });
      const opt = new RMSProp(device, [
        { params: [spec(0), spec(1)], stateDtype: 'int8-blockwise', weightDecay: 0.01 },
        { params: [spec(2)], momentum: 0.9, centered: true },
      ], { lr: 1e-3 });
      const twin = new ReferenceRMSProp([
        { params: [cpu[0]!, cpu[1]!], stateDtype: 'int8-blockwise', weightDecay: 0.01 },
        { params: [cpu[2]!], momentum: 0.9, centered: true },
      ], { lr: 1e-3 }, { multiplyAdd: MULTIPLY_ADD });
      try {
        for (let k = 0; k < 3; k++) {
          cpu.forEach((t, i) => {
            t.grad.set(randomGrads(t.param.length, random));
            write(device, placed[i]![1].buffer, 0, t.grad);
          });
          opt.step();
          twin.step();
        }
        const state = await opt.stateDict();
        expect(state.tensors.map((t) => t.codes !== undefined)).toEqual([true, true, false]);
        expect(state.tensors[2]!.momentumBuffer?.length).toBe(4096);
        if (TOLERANCE.kind === 'exact') {
          const [gp, cp] = [await opt.readParams(), await twin.readParams()];
          gp.forEach((p, i) => expectSame(bits(p), bits(cp[i]!), `groups: tensor ${i} parameters`));
          const cs = await twin.stateDict();
          state.tensors.forEach((t, i) => {
            expectSame(t.codes ?? bits(t.squareAvg), cs.tensors[i]!.codes ?? bits(cs.tensors[i]!.squareAvg), `groups: tensor ${i} state`);
          });
          expectSame(bits(state.tensors[2]!.momentumBuffer!), bits(cs.tensors[2]!.momentumBuffer!), 'groups: momentum buffer');
        }
      } finally {
        opt.destroy();
        placed.flat().forEach((p) => p.buffer.destroy());
      }
    });
  });
});
