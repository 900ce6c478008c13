/**
 * `stateDtype: 'int8-blockwise'` in the TF.js optimizer (issue 20): each step against the core
 * optimizer over an arena on the same device (the engine's own construction: bit for bit on every
 * adapter, the same GPU arithmetic) and against the CPU twin (bit for bit where the adapter is
 * measured exact, SwiftShader and lavapipe; elsewhere test/gpu/blockwise8.test.ts holds the core
 * within the derived bound); a fit that trains as the f32 state does; save and load with the
 * optimizer resuming bit for bit; the state carried over exactly when the variable list changes;
 * weights of the other state dtype refused (state untouched) or converted explicitly.
 */
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect } from 'vitest';
import {
  DYNAMIC_MAP, ParamArena, RMSProp, ReferenceRMSProp, presets, resolveOptions,
} from '../../src/index.js';
import { quantizeBlockwise } from '../../src/rule/blockwise8.js';
import {
  convertTfjsWeights, tfjsRMSProp, WEBGPU_RMSPROP_CLASS_NAME, type TfjsRMSPropConfig, type WebGPURMSProp,
} from '../../src/tfjs/index.js';
import {
  attemptWatchingGpuWork, bits, gpuTest, MULTIPLY_ADD, NO_GPU_WORK, REDUCE_PARTIALS, rng, TOLERANCE, write,
} from '../gpu/harness.js';
import { gradients, onGpu, readThroughOp, tf, tfl, useTfjs } from './harness.js';
import { makeData, readWeights } from './models.js';

const gpu = useTfjs();
const EIGHT_BIT: TfjsRMSPropConfig = { stateDtype: 'int8-blockwise' };
let id = 0;

/** One variable's state as the optimizer's weights give it: `/rms`, and the 8-bit codes and absmax if any. */
interface WeightState {
  readonly rms: Float32Array;
  readonly codes?: Uint8Array;
  readonly absmax?: Float32Array;
}

/** The optimizer's state by variable name, read from `getWeights()` (codes unpacked from their int32 words). */
async function weightStates(optimizer: tf.Optimizer): Promise<Map<string, WeightState>> {
  const weights = await optimizer.getWeights();
  const out = new Map<string, { rms?: Float32Array; codes?: Uint8Array; absmax?: Float32Array }>();
  const at = (name: string) => out.get(name) ?? out.set(name, {}).get(name)!;
  for (const w of weights.slice(1)) {
    const data = await w.tensor.data();
    if (w.name.endsWith('/rms/codes')) {
      expect(w.tensor.dtype, `${w.name} dtype`).toBe('int32');
      const words = data as Int32Array;
      at(w.name.slice(0, -'/rms/codes'.length)).codes = Uint8Array.from({ length: words.length * 4 }, (_, k) => (words[k >> 2]! >>> ((k & 3) * 8)) & 0xff);
    } else if (w.name.endsWith('/rms/absmax')) {
      at(w.name.slice(0, -'/rms/absmax'.length)).absmax = new Float32Array(data);
    } else if (w.name.endsWith('/rms')) {
      at(w.name.slice(0, -'/rms'.length)).rms = new Float32Array(data);
    }
  }
  // Codes come four to a word: trim the last word's padding (which must be 0) to the variable's size.
  return new Map([...out].map(([name, s]) => {
    const n = s.rms!.length;
    if (s.codes) expect(Array.from(s.codes.subarray(n)), `${name}: the last word's unused bytes`).toEqual(Array.from(s.codes.subarray(n)).map(() => 0));
    return [name, { rms: s.rms!, ...(s.codes ? { codes: s.codes.subarray(0, n), absmax: s.absmax! } : {}) }];
  }));
}

/** Expects two arrays equal element for element (floats as bits), naming the first difference. */
function expectSame(a: ArrayLike<number> | undefined, b: ArrayLike<number> | undefined, what: string): void {
  expect(a?.length, `${what}: length`).toBe(b?.length);
  if (!a || !b) return;
  let at = -1;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) { at = k; break; }
  expect(at < 0 ? 'equal' : `[${at}]: ${a[at]} vs ${b[at]}`, what).toBe('equal');
}

/** A state (codes, absmax, values) against another, bit for bit; `undefined` codes on both sides for f32 state. */
function expectSameState(
  ours: WeightState, theirs: { squareAvg: Float32Array; codes?: Uint8Array; absmax?: Float32Array }, what: string,
): void {
  expectSame(ours.codes, theirs.codes, `${what}: codes`);
  expectSame(ours.absmax && bits(ours.absmax), theirs.absmax && bits(theirs.absmax), `${what}: absmax`);
  expectSame(bits(ours.rms), bits(theirs.squareAvg), `${what}: /rms`);
}

/** Variables of `sizes` (seeded values), under fresh names. */
function makeVariables(sizes: readonly number[], random: () => number): tf.Variable[] {
  const n = id++;
  return sizes.map((size, i) => tf.variable(onGpu(gradients(random, size, -1, 0)), true, `blockwise8/${n}/v${i}`));
}

/** One step of `optimizer` over `variables` with these gradients (GPU-resident tensors, disposed after). */
function stepWith(optimizer: tf.Optimizer, variables: readonly tf.Variable[], grads: readonly Float32Array[]): void {
  const t = grads.map((g) => onGpu(g));
  optimizer.applyGradients(variables.map((v, i) => ({ name: v.name, tensor: t[i]! })));
  tf.dispose(t);
}

describe('each step against the core optimizer and the CPU twin', () => {
  // 8-bit tensors (a last block of 136, several blocks) and one below 4096 elements, which keeps f32 state.
  const SIZES = [5000, 300, 4099];
  const VARIANTS: [string, TfjsRMSPropConfig][] = [
    ['TF.js defaults', {}],
    ['learningRate 0.01, decay 0.99, epsilon 1e-8 outside, weight decay', { learningRate: 0.01, decay: 0.99, epsilon: 1e-8, epsMode: 'outside', weightDecay: 0.01 }],
    ['clipGradNorm, skipNonFinite, decoupled decay', { learningRate: 0.003, clipGradNorm: 1, skipNonFinite: true, weightDecay: 0.1, weightDecayMode: 'decoupled' }],
  ];
  for (const [name, config] of VARIANTS) {
    gpuTest(`${name}: parameters, codes and absmax after every step`, gpu, async (device) => {
      const random = rng(11);
      const variables = makeVariables(SIZES, random);
      const initial = await Promise.all(variables.map((v) => readThroughOp(v)));
      const optimizer = tfjsRMSProp(tf, { ...config, ...EIGHT_BIT });
      const options = optimizer.options;
      expect(options.stateDtype).toBe('int8-blockwise');
      // The core over an arena, as the engine builds it, and the CPU twin.
      const arena = new ParamArena(device, SIZES.map((size, i) => ({ name: variables[i]!.name, size })), 'test.tfjs8.arena');
      arena.tensors.forEach((t, i) => write(device, arena.params, t.offset, initial[i]!));
      const core = new RMSProp(device, arena.specs(), options);
      const cpu = initial.map((p) => ({ param: p.slice(), grad: new Float32Array(p.length) }));
      const twin = new ReferenceRMSProp(cpu.map((t, i) => ({ name: variables[i]!.name, ...t })), options, { multiplyAdd: MULTIPLY_ADD, reducePartials: REDUCE_PARTIALS });
      try {
        for (let s = 0; s < 6; s++) {
          const grads = SIZES.map((size) => gradients(random, size));
          stepWith(optimizer, variables, grads);
          arena.tensors.forEach((t, i) => write(device, arena.grads, t.offset, grads[i]!));
          core.step();
          grads.forEach((g, i) => cpu[i]!.grad.set(g));
          twin.step();
          const [params, coreParams, coreState, twinState, ours] = [
            await Promise.all(variables.map((v) => readThroughOp(v))), await core.readParams(),
            await core.stateDict(), await twin.stateDict(), await weightStates(optimizer),
          ];
          variables.forEach((v, i) => {
            const what = `step ${s + 1}, ${v.name} (${SIZES[i]} elements)`;
            const state = ours.get(v.name)!;
            expect(state.codes !== undefined, `${what}: 8-bit state exactly from 4096 elements`).toBe(SIZES[i]! >= 4096);
            expectSame(bits(params[i]!), bits(coreParams[i]!), `${what}: parameters against the core`);
            expectSameState(state, coreState.tensors[i]!, `${what}: state against the core`);
            if (TOLERANCE.kind === 'exact') {
              expectSame(bits(params[i]!), bits(cpu[i]!.param), `${what}: parameters against the twin`);
              expectSameState(state, twinState.tensors[i]!, `${what}: state against the twin`);
            }
          });
        }
      } finally {
        core.destroy();
        arena.destroy();
        optimizer.dispose();
        tf.dispose(variables);
      }
    }, 120_000);
  }
});

/** 8 → 72 → 72 → 1: the middle kernel (5184 elements, 21 blocks, the last of 64) is kept in 8 bits. */
function model8(seed: number): tfl.Sequential {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ units: 72, activation: 'tanh', inputShape: [8] }),
      tfl.layers.dense({ units: 72, activation: 'tanh' }),
      tfl.layers.dense({ units: 1 }),
    ],
  });
  const random = rng(seed);
  const values = model.weights.map((w) => {
    const fanIn = w.shape.length > 1 ? w.shape[0]! : 0;
    const scale = fanIn > 0 ? Math.sqrt(3 / fanIn) : 0.05;
    return tf.tensor(Float32Array.from({ length: w.shape.reduce((a, b) => a! * b!, 1)! }, () => (random() * 2 - 1) * scale), w.shape as number[]);
  });
  model.setWeights(values);
  tf.dispose(values);
  return model;
}

describe('model.compile with stateDtype int8-blockwise', () => {
  gpuTest('fit trains as with f32 state: loss within 10% of the f32 run, both down 4x', gpu, async () => {
    const data = makeData(tf, 'mlp', 64);
    const runs = [{}, EIGHT_BIT].map((extra) => {
      const model = model8(5);
      const optimizer = tfjsRMSProp(tf, { learningRate: 0.003, ...extra });
      model.compile({ optimizer, loss: 'meanSquaredError' });
      return { model, optimizer };
    });
    try {
      const losses: number[][] = [];
      for (const { model } of runs) {
        const h = await model.fit(data.x, data.y, { batchSize: 32, epochs: 25, shuffle: false, verbose: 0 });
        losses.push(h.history['loss'] as number[]);
      }
      const [f32, q8] = losses as [number[], number[]];
      const last = (l: number[]) => l[l.length - 1]!;
      expect(last(f32), 'f32 state trains').toBeLessThan(f32[0]! / 4);
      expect(last(q8), '8-bit state trains').toBeLessThan(q8[0]! / 4);
      expect(Math.abs(last(q8) - last(f32)) / last(f32), `final loss: 8-bit ${last(q8)}, f32 ${last(f32)}`).toBeLessThanOrEqual(0.1);
      // The state: the middle kernel in 8 bits, the others in f32; each 8-bit block's absmax (its largest
      // mean square) within 10% of the f32 run's largest mean square of that block. Measured (50 steps):
      // losses 0.02690 (f32) and 0.02701 (8-bit), 0.4% apart; absmax within 3.3% (lavapipe, SwiftShader).
      const [sf, sq] = [await weightStates(runs[0]!.optimizer), await weightStates(runs[1]!.optimizer)];
      const kernel = (runs[1]!.model.weights[2]!.read() as tf.Variable).name;
      expect([...sq].filter(([, s]) => s.codes).map(([name]) => name)).toEqual([kernel]);
      const f32Rms = sf.get((runs[0]!.model.weights[2]!.read() as tf.Variable).name)!.rms, absmax = sq.get(kernel)!.absmax!;
      absmax.forEach((m, b) => {
        const block = f32Rms.subarray(b * 256, (b + 1) * 256).reduce((a, x) => Math.max(a, x), 0);
        expect(Math.abs(m - block) / block, `block ${b}: absmax ${m}, f32 max ${block}`).toBeLessThanOrEqual(0.1);
      });
    } finally {
      tf.dispose([data.x, data.y]);
      for (const r of runs) { r.model.dispose(); r.optimizer.dispose(); }
    }
  }, 120_000);

  gpuTest('model.save with includeOptimizer saves codes and absmax; the loaded model resumes bit for bit', gpu, async () => {
    const data = makeData(tf, 'mlp', 16);
    const model = model8(6);
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, clipGradNorm: 5, ...EIGHT_BIT });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    let loaded: tfl.LayersModel | undefined;
    try {
      for (let s = 0; s < 3; s++) await model.trainOnBatch(data.x, data.y);
      let artifacts: tf.io.ModelArtifacts | undefined;
      await model.save(tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }), { includeOptimizer: true });
      expect(artifacts!.trainingConfig!.optimizer_config).toEqual({
        class_name: WEBGPU_RMSPROP_CLASS_NAME,
        config: { learningRate: 0.01, decay: 0.9, momentum: 0, epsilon: 1e-7, centered: false, clipGradNorm: 5, stateDtype: 'int8-blockwise' },
      });
      const names = model.weights.map((w) => (w.read() as tf.Variable).name), kernel = names[2]!;
      const specs = artifacts!.weightSpecs!.filter((s) => s.group === 'optimizer');
      expect(specs.map((s) => `${s.name}:${s.dtype}:${s.shape.join('x')}`)).toEqual([
        'iter:int32:', ...names.map((n, i) => `${n}/rms:float32:${model.weights[i]!.shape.join('x')}`),
        ...names.map((n, i) => `${n}/momentum:float32:${model.weights[i]!.shape.join('x')}`),
        `${kernel}/rms/codes:int32:1296`, `${kernel}/rms/absmax:float32:21`,
      ]);
      const saved = await Promise.all((await optimizer.getWeights()).map(async (w) => ({ dtype: w.tensor.dtype, data: await w.tensor.data() })));
      loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
      const restored = loaded.optimizer as WebGPURMSProp;
      expect(restored.options).toEqual(optimizer.options);
      expect(restored.iterations).toBe(3);
      // Before its first step the loaded optimizer gives back what it was given, codes and absmax included.
      const given = await restored.getWeights();
      expect(given.length).toBe(saved.length);
      for (const [i, w] of given.entries()) {
        expect(w.tensor.dtype, w.name).toBe(saved[i]!.dtype);
        const [x, y] = [await w.tensor.data(), saved[i]!.data];
        expectSame(x instanceof Float32Array ? bits(x) : x, y instanceof Float32Array ? bits(y) : y, `loaded ${w.name}`);
      }
      for (let s = 0; s < 2; s++) {
        await model.trainOnBatch(data.x, data.y);
        await loaded.trainOnBatch(data.x, data.y);
      }
      const [a, b] = [await readWeights(tf, model), await readWeights(tf, loaded)];
      a.forEach((w, i) => expectSame(bits(b[i]!), bits(w), `weight ${i}, two steps after loading`));
      const [sa, sb] = [await optimizer.getWeights(), await restored.getWeights()];
      // The same layout, in the names of the loaded model's variables (tfjs-layers names them afresh).
      const loadedNames = loaded.weights.map((w) => (w.read() as tf.Variable).name);
      expect(sb.map((w) => w.name)).toEqual(['iter', ...loadedNames.map((n) => `${n}/rms`), ...loadedNames.map((n) => `${n}/momentum`),
        `${loadedNames[2]}/rms/codes`, `${loadedNames[2]}/rms/absmax`]);
      for (const [i, w] of sa.entries()) {
        expect(sb[i]!.tensor.dtype, w.name).toBe(w.tensor.dtype);
        const [x, y] = [await w.tensor.data(), await sb[i]!.tensor.data()];
        expectSame(w.tensor.dtype === 'float32' ? bits(y as Float32Array) : y, w.tensor.dtype === 'float32' ? bits(x as Float32Array) : x, `state ${w.name}`);
      }
    } finally {
      loaded?.dispose();
      (loaded?.optimizer as WebGPURMSProp | undefined)?.dispose();
      tf.dispose([data.x, data.y]);
      model.dispose();
      optimizer.dispose();
    }
  }, 120_000);
});

describe('the variable list changes (fine-tuning): the 8-bit state is carried over on the GPU', () => {
  gpuTest('a variable joins, one is disposed, one leaves the list: each variable steps as with an optimizer of its own', gpu, async () => {
    const random = rng(12);
    const SIZES = [5000, 4500, 100, 4099];
    const variables = makeVariables(SIZES, random);
    const initial = await Promise.all(variables.map((v) => readThroughOp(v)));
    // The same variables and gradients, each under an optimizer of its own whose list never changes.
    const lone = initial.map((p, i) => tf.variable(onGpu(p), true, `${variables[i]!.name}/lone`));
    const lones = lone.map(() => tfjsRMSProp(tf, { learningRate: 0.01, ...EIGHT_BIT }));
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, ...EIGHT_BIT });
    const cpu = initial.map((p) => ({ param: p.slice(), grad: new Float32Array(p.length) }));
    const o = optimizer.options;
    const twins = cpu.map((t, i) => new ReferenceRMSProp([{ name: variables[i]!.name, ...t }], o, { multiplyAdd: MULTIPLY_ADD, reducePartials: REDUCE_PARTIALS }));
    const step = (indices: number[]) => {
      const grads = indices.map((i) => gradients(random, SIZES[i]!));
      stepWith(optimizer, indices.map((i) => variables[i]!), grads);
      indices.forEach((i, k) => {
        stepWith(lones[i]!, [lone[i]!], [grads[k]!]);
        cpu[i]!.grad.set(grads[k]!);
        twins[i]!.step();
      });
    };
    const check = async (indices: number[], what: string) => {
      const [ours, theirs] = [await weightStates(optimizer), await Promise.all(lones.map((x) => weightStates(x)))];
      for (const i of indices) {
        const v = variables[i]!, at = `${what}: ${v.name}`;
        expectSame(bits(await readThroughOp(v)), bits(await readThroughOp(lone[i]!)), `${at}: parameters against its own optimizer`);
        const mine = ours.get(v.name)!, alone = theirs[i]!.get(lone[i]!.name)!;
        expectSameState(mine, { squareAvg: alone.rms, ...(alone.codes ? { codes: alone.codes, absmax: alone.absmax! } : {}) }, `${at}: state against its own optimizer`);
        if (TOLERANCE.kind === 'exact') {
          expectSame(bits(await readThroughOp(v)), bits(cpu[i]!.param), `${at}: parameters against the twin`);
          expectSameState(mine, (await twins[i]!.stateDict()).tensors[0]!, `${at}: state against the twin`);
        }
      }
    };
    try {
      for (let s = 0; s < 3; s++) step([0, 2, 3]);
      await check([0, 2, 3], 'before v1 joins');
      for (let s = 0; s < 2; s++) step([1, 0, 2, 3]); // v1 joins: a new engine, the others' state carried over
      await check([0, 1, 2, 3], 'after v1 joined');
      variables[0]!.dispose(); // leaves for good: a new engine again, the others' state carried over
      for (let s = 0; s < 2; s++) step([3, 1, 2]);
      await check([1, 2, 3], 'after v0 was disposed');
      for (let s = 0; s < 2; s++) step([2, 1]); // v3 leaves the list: kept, its codes and absmax as they were
      await check([1, 2, 3], 'v3 left the list');
      expect(optimizer.iterations).toBe(9);
    } finally {
      optimizer.dispose();
      lones.forEach((x) => x.dispose());
      tf.dispose([...variables.filter((v) => !v.isDisposed), ...lone]);
    }
  }, 120_000);

  gpuTest('model.fit fine-tuning: freeze the 8-bit kernel, fit, unfreeze, compile again, fit', gpu, async () => {
    const data = makeData(tf, 'mlp', 32);
    const model = model8(8);
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.003, ...EIGHT_BIT });
    // (model.weights lists trainable weights first: a frozen kernel moves to the end.)
    const kernel = () => model.layers[1]!.weights[0]!.read() as tf.Variable;
    try {
      model.layers[1]!.trainable = false;
      model.compile({ optimizer, loss: 'meanSquaredError' });
      const frozen = await readThroughOp(kernel());
      const first = await model.fit(data.x, data.y, { batchSize: 16, epochs: 3, shuffle: false, verbose: 0 });
      expectSame(bits(await readThroughOp(kernel())), bits(frozen), 'the frozen kernel');
      const before = await weightStates(optimizer);
      expect(before.has(kernel().name), 'no state for the frozen kernel yet').toBe(false);
      model.layers[1]!.trainable = true;
      model.compile({ optimizer, loss: 'meanSquaredError' });
      const second = await model.fit(data.x, data.y, { batchSize: 16, epochs: 3, shuffle: false, verbose: 0 });
      expect(optimizer.iterations).toBe(12);
      const after = await weightStates(optimizer);
      const k = after.get(kernel().name)!;
      expect(k.codes, 'the joined kernel keeps 8-bit state').toBeDefined();
      expect(k.absmax!.every((m) => m > 0), 'and has stepped').toBe(true);
      const losses = [...(first.history['loss'] as number[]), ...(second.history['loss'] as number[])];
      expect(losses[losses.length - 1]!, `losses ${losses.map((l) => l.toFixed(4)).join(' ')}`).toBeLessThan(losses[0]!);
    } finally {
      tf.dispose([data.x, data.y]);
      model.dispose();
      optimizer.dispose();
    }
  }, 120_000);

  gpuTest('the core\'s copyStateFrom checks every pair before recording a copy', gpu, async (device) => {
    const arena = new ParamArena(device, [{ name: 'a', size: 5000 }, { name: 'b', size: 4500 }, { name: 'c', size: 100 }], 'test.tfjs8.carry');
    const options = resolveOptions({ stateDtype: 'int8-blockwise' });
    const [x, y] = [new RMSProp(device, arena.specs(), options), new RMSProp(device, arena.specs(), options)];
    const f32 = new RMSProp(device, arena.specs(), resolveOptions({}));
    try {
      for (const [source, pairs, message] of [
        [x, [[0, 0], [0, 1]], /tensors of 5000 and 4500 elements/],
        [x, [[0, 0], [2, 2], [1, 7]], /pair \[1, 7\] names no tensor/],
        [x, [[0, 0], [1, 0]], /tensor 0 is the target of two pairs/],
        [f32, [[2, 2], [0, 0]], /stateDtype 'f32' and 'int8-blockwise'/],
      ] as const) {
        const encoder = device.createCommandEncoder();
        const { error, calls } = attemptWatchingGpuWork(device, () => y.copyStateFrom(encoder, source, pairs));
        expect(error).toBeInstanceOf(RangeError);
        expect((error as Error).message).toMatch(message);
        expect(calls, 'nothing recorded').toEqual(NO_GPU_WORK);
        encoder.finish();
      }
    } finally {
      for (const o of [x, y, f32]) o.destroy();
      arena.destroy();
    }
  });
});

describe('config and weights: refused clearly (state untouched) or converted explicitly', () => {
  gpuTest('stateDtype: getConfig and fromConfig keep it; a bad value is refused with the core\'s message', gpu, async (device) => {
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, ...EIGHT_BIT });
    const config = optimizer.getConfig();
    expect(config['stateDtype']).toBe('int8-blockwise');
    // What tfjs-layers does to load a saved model's optimizer.
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap[WEBGPU_RMSPROP_CLASS_NAME]!;
    const back = fromConfig(cls, config) as unknown as WebGPURMSProp;
    expect(back.getClassName()).toBe(WEBGPU_RMSPROP_CLASS_NAME);
    expect(back.options).toEqual(optimizer.options);
    expect(back.getConfig()).toEqual(config);
    optimizer.dispose();
    back.dispose();
    const core = (config: object): string => {
      try {
        resolveOptions(config, presets.tfjs, 'config');
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error('the core accepted it');
    };
    for (const [given, ours] of [
      [{ stateDtype: 'int4' }, { stateDtype: 'int4' }],
      [{ stateDtype: 'int8-blockwise', momentum: 0.9 }, { stateDtype: 'int8-blockwise', momentum: 0.9 }],
      [{ stateDtype: 'int8-blockwise', centered: true }, { stateDtype: 'int8-blockwise', centered: true }],
    ] as const) {
      const { error, calls } = attemptWatchingGpuWork(device, () => tfjsRMSProp(tf, ours as TfjsRMSPropConfig));
      expect((error as Error).message).toBe(core(given));
      expect((error as Error).message).toMatch(/config\.stateDtype/);
      expect(calls, 'no GPU work').toEqual(NO_GPU_WORK);
    }
    try {
      await tf.setBackend('cpu');
      expect(() => tfjsRMSProp(tf, { ...EIGHT_BIT, fallback: 'tfjs' })).toThrow(/tf\.train\.rmsprop, which has no stateDtype/);
    } finally {
      await tf.setBackend('webgpu');
    }
  });

  /** Two variables (one 8-bit, one f32 state) trained 2 steps by an optimizer of `config`. */
  async function trained(config: TfjsRMSPropConfig, seed: number) {
    const random = rng(seed);
    const variables = makeVariables([4300, 50], random);
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, ...config });
    for (let s = 0; s < 2; s++) stepWith(optimizer, variables, [gradients(random, 4300), gradients(random, 50)]);
    const snapshot = async () => {
      const weights = await optimizer.getWeights();
      const state = await Promise.all(weights.map(async (w) => `${w.name}=${Array.from(await w.tensor.data()).join(',')}`));
      return `${optimizer.iterations} ${state.join(' ')} ${(await Promise.all(variables.map((v) => readThroughOp(v)))).map((p) => Array.from(bits(p)).join()).join(' ')}`;
    };
    return { variables, optimizer, snapshot, random, dispose: () => { optimizer.dispose(); tf.dispose(variables); } };
  }

  gpuTest('setWeights refuses the other dtype\'s weights and altered 8-bit weights, naming the fix; state untouched', gpu, async () => {
    const q = await trained(EIGHT_BIT, 21), f = await trained({}, 22);
    const f32Weights = await f.optimizer.getWeights(), q8Weights = await q.optimizer.getWeights();
    const copy = async (weights: { name: string; tensor: tf.Tensor }[], change: (name: string, values: Float32Array | Int32Array) => void = () => {}) =>
      Promise.all(weights.map(async (w) => {
        const values = (w.tensor.dtype === 'int32' ? Int32Array : Float32Array).from(await w.tensor.data());
        change(w.name, values);
        return { name: w.name, tensor: tf.tensor(values, w.tensor.shape, w.tensor.dtype) };
      }));
    const made: tf.Tensor[] = [];
    const attempt = async (target: typeof q, weights: { name: string; tensor: tf.Tensor }[], message: RegExp) => {
      made.push(...weights.map((w) => w.tensor));
      const before = await target.snapshot();
      await expect(target.optimizer.setWeights(weights)).rejects.toThrow(message);
      expect(await target.snapshot(), 'state, iterations and variables untouched').toBe(before);
    };
    try {
      await attempt(q, await copy(f32Weights), /'.*\/v0\/rms' is f32 state .*stateDtype: 'f32'.*convertTfjsWeights\(tf, weights, 'int8-blockwise'\)/);
      await attempt(f, await copy(q8Weights), /'.*\/v0\/rms\/codes' is 8-bit state .*in f32.*convertTfjsWeights\(tf, weights, 'f32'\)/);
      await attempt(q, await copy(q8Weights, (name, v) => { if (name.endsWith('v0/rms')) v[7] = (v[7] as number) * 1.5 + 1e-12; }),
        /'.*\/v0\/rms' is not the value of '.*\/v0\/rms\/codes' and '.*\/v0\/rms\/absmax'/);
      await attempt(q, await copy(q8Weights, (name, v) => { if (name.endsWith('/rms/absmax')) v[3] = -1; }), /absmax' must hold values >= 0/);
      await attempt(q, (await copy(q8Weights)).slice(0, -1), /must be followed by '.*\/v0\/rms\/absmax', got nothing/);
      const asFloat = await copy(q8Weights);
      asFloat[asFloat.length - 2]!.tensor = tf.cast(asFloat[asFloat.length - 2]!.tensor, 'float32');
      await attempt(q, asFloat, /\/v0\/rms\/codes' is float32; 8-bit codes are int32/);
      const short = await copy(q8Weights);
      short[short.length - 1]!.tensor = tf.zeros([3]);
      await attempt(q, short, /absmax' has 3 elements; variable 0 .* needs 17/);
      // A fresh 8-bit optimizer refuses f32 weights at its first step (they wait until it knows its variables).
      const fresh = tfjsRMSProp(tf, EIGHT_BIT);
      await fresh.setWeights(await copy(f32Weights));
      const t = [onGpu(gradients(q.random, 4300)), onGpu(gradients(q.random, 50))];
      const before = await Promise.all(q.variables.map((v) => readThroughOp(v)));
      expect(() => fresh.applyGradients(q.variables.map((v, i) => ({ name: v.name, tensor: t[i]! }))))
        .toThrow(/is f32 state .*convertTfjsWeights/);
      const after = await Promise.all(q.variables.map((v) => readThroughOp(v)));
      after.forEach((p, i) => expectSame(bits(p), bits(before[i]!), `variable ${i} untouched by the refused first step`));
      tf.dispose(t);
      fresh.dispose();
    } finally {
      tf.dispose(made);
      q.dispose();
      f.dispose();
    }
  });

  gpuTest('convertTfjsWeights converts explicitly both ways, and the converted weights load and step', gpu, async () => {
    const f = await trained({}, 31), q = await trained(EIGHT_BIT, 32);
    const made: tf.Tensor[] = [];
    try {
      const f32Weights = await f.optimizer.getWeights();
      const toQ8 = await convertTfjsWeights(tf, f32Weights, 'int8-blockwise');
      made.push(...toQ8.map((w) => w.tensor));
      const f32Rms = new Float32Array(await f32Weights[1]!.tensor.data());
      const quantized = quantizeBlockwise(f32Rms);
      const target = tfjsRMSProp(tf, { learningRate: 0.01, ...EIGHT_BIT });
      await target.setWeights(toQ8);
      stepWith(target, q.variables, [gradients(q.random, 4300), gradients(q.random, 50)]); // builds: loads them, then steps
      target.dispose();
      const loaded = tfjsRMSProp(tf, { learningRate: 0.01, ...EIGHT_BIT });
      stepWith(loaded, q.variables, [gradients(q.random, 4300), gradients(q.random, 50)]);
      await loaded.setWeights(toQ8); // into built GPU state
      const state = (await weightStates(loaded)).get(q.variables[0]!.name)!;
      expectSame(state.codes, quantized.codes.subarray(0, 4300), 'codes: the f32 /rms quantized');
      expectSame(bits(state.absmax!), bits(quantized.absmax), 'absmax');
      expectSame(bits(state.rms), bits(Float32Array.from(state.codes!, (c, k) => DYNAMIC_MAP[c]! * quantized.absmax[k >> 8]!)), '/rms: their values');
      loaded.dispose();
      // And back: 8-bit weights to f32 load into an f32 optimizer, /rms their exact values.
      const q8Weights = await q.optimizer.getWeights();
      const toF32 = await convertTfjsWeights(tf, q8Weights, 'f32');
      made.push(...toF32.map((w) => w.tensor));
      expect(toF32.map((w) => w.name)).toEqual(q8Weights.filter((w) => !/\/rms\/(codes|absmax)$/.test(w.name)).map((w) => w.name));
      await f.optimizer.setWeights(toF32);
      const back = await weightStates(f.optimizer);
      expectSame(bits(back.get(f.variables[0]!.name)!.rms), bits(new Float32Array(await q8Weights[1]!.tensor.data())), '/rms in f32');
      expect(back.get(f.variables[0]!.name)!.codes).toBeUndefined();
      await expect(convertTfjsWeights(tf, q8Weights, 'int4' as never)).rejects.toThrow(/stateDtype must be 'f32' or 'int8-blockwise'/);
    } finally {
      tf.dispose(made);
      f.dispose();
      q.dispose();
    }
  });
});
