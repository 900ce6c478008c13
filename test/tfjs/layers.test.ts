/**
 * Wherever TF.js calls an optimizer (issue 12, item 2): `model.compile` then `fit`, `fitDataset`
 * and `trainOnBatch`; `minimize(f, returnCost, varList)`; `learningRate` between steps; save and
 * load with `includeOptimizer`; `getWeights` / `setWeights` in TF.js's names and order, exchanged
 * with `tf.train.rmsprop` both ways. Against `tf.train.rmsprop` from the same weights on the same data.
 */
import { describe, expect } from 'vitest';
import { tfjsRMSProp, WEBGPU_RMSPROP_CLASS_NAME, type TfjsRMSPropConfig, type WebGPURMSProp } from '../../src/tfjs/index.js';
import { gpuTest, rng } from '../gpu/harness.js';
import { agreement, gradients, onGpu, readThroughOp, tf, tfl, useTfjs } from './harness.js';
import { lossOf, makeData, makeModel, readWeights, type ModelKind } from './models.js';
import { TFJS_ULPS } from './trio.js';

const gpu = useTfjs();

/**
 * How far two copies of a model may drift apart over the few steps of these tests (5 at most),
 * relative to each tensor's largest weight: each step rounds the mean square differently by up to
 * TFJS_ULPS, and the next batch's gradients see that through the model. Measured: 1.4e-7 on
 * SwiftShader, 2.2e-7 on lavapipe (losses: 9e-8); 1e-6 leaves room for adapters whose division
 * and sqrt round less tightly (WGSL allows 2.5 ULPs).
 */
const DRIFT = 1e-6;

/** The worst weight difference between two models, relative to each tensor's largest weight. */
async function drift(a: tfl.LayersModel, b: tfl.LayersModel): Promise<number> {
  const [x, y] = [await readWeights(tf, a), await readWeights(tf, b)];
  return Math.max(...x.map((w, i) => agreement(w, y[i]!).relative));
}

/** Two copies of `kind` from the same weights: one compiled with ours, one with tf.train.rmsprop. */
function pair(kind: ModelKind, config: TfjsRMSPropConfig = { learningRate: 0.01 }) {
  const ours = makeModel(tf, tfl, kind, 3), theirs = makeModel(tf, tfl, kind, 3);
  const optimizer = tfjsRMSProp(tf, config);
  const o = optimizer.options;
  const reference = tf.train.rmsprop(o.lr, o.alpha, o.momentum, o.eps, o.centered);
  ours.compile({ optimizer, loss: lossOf(kind) });
  theirs.compile({ optimizer: reference, loss: lossOf(kind) });
  return {
    ours, theirs, optimizer, reference,
    dispose: () => { ours.dispose(); theirs.dispose(); optimizer.dispose(); reference.dispose(); },
  };
}

/** A dataset for fitDataset: `batches` batches of `data`, fresh tensors each (fitDataset disposes them). */
function dataset(x: tf.Tensor, y: tf.Tensor, batchSize: number) {
  const batches = x.shape[0]! / batchSize;
  return {
    iterator: async () => {
      let i = 0;
      return {
        next: async () => (i < batches
          ? { value: { xs: tf.slice(x, i * batchSize, batchSize), ys: tf.slice(y, i++ * batchSize, batchSize) }, done: false }
          : { value: null, done: true }),
      };
    },
  } as unknown as Parameters<tfl.LayersModel['fitDataset']>[0];
}

describe('model.compile, then', () => {
  gpuTest('fit, fitDataset and trainOnBatch train as tf.train.rmsprop does', gpu, async () => {
    const p = pair('mlp', { learningRate: 0.01, momentum: 0.5 });
    const data = makeData(tf, 'mlp', 16);
    try {
      expect(p.ours.optimizer).toBe(p.optimizer);
      await p.ours.fit(data.x, data.y, { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 });
      await p.theirs.fit(data.x, data.y, { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 });
      expect(await drift(p.ours, p.theirs), 'after fit').toBeLessThanOrEqual(DRIFT);
      await p.ours.fitDataset(dataset(data.x, data.y, 8), { epochs: 1, verbose: 0 });
      await p.theirs.fitDataset(dataset(data.x, data.y, 8), { epochs: 1, verbose: 0 });
      expect(await drift(p.ours, p.theirs), 'after fitDataset').toBeLessThanOrEqual(DRIFT);
      const [a, b] = [await p.ours.trainOnBatch(data.x, data.y), await p.theirs.trainOnBatch(data.x, data.y)];
      expect(Math.abs((a as number) - (b as number)) / (b as number), 'trainOnBatch loss').toBeLessThanOrEqual(DRIFT);
      expect(await drift(p.ours, p.theirs), 'after trainOnBatch').toBeLessThanOrEqual(DRIFT);
      expect(p.optimizer.iterations).toBe(5);
      expect(p.optimizer.iterations).toBe(p.reference.iterations);
    } finally {
      tf.dispose([data.x, data.y]);
      p.dispose();
    }
  });
});

describe('optimizer.minimize(f, returnCost, varList)', () => {
  gpuTest('returns the cost when asked, trains only varList, and agrees with tf.train.rmsprop', gpu, async () => {
    const random = rng(1);
    const x = onGpu(gradients(random, 24, -1, 0), [8, 3]);
    const y = onGpu(gradients(random, 8, -1, 0), [8, 1]);
    const init = [gradients(random, 12, -1, 0), gradients(random, 4, -1, 0)];
    const make = (who: string) => [tf.variable(onGpu(init[0]!, [3, 4]), true, `min/${who}/w1`), tf.variable(onGpu(init[1]!, [4, 1]), true, `min/${who}/w2`)];
    const [w1, w2] = make('ours') as [tf.Variable, tf.Variable];
    const [v1, v2] = make('theirs') as [tf.Variable, tf.Variable];
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.02, momentum: 0.9 });
    const reference = tf.train.rmsprop(0.02, 0.9, 0.9);
    const loss = (a: tf.Variable, b: tf.Variable) => () => tf.losses.meanSquaredError(y, tf.matMul(tf.tanh(tf.matMul(x, a)), b)) as tf.Scalar;
    try {
      const w2Before = await readThroughOp(w2);
      for (let s = 0; s < 4; s++) {
        const cost = optimizer.minimize(loss(w1, w2), true, [w1]); // w2 is not trained
        const theirs = reference.minimize(loss(v1, v2), true, [v1]);
        expect(cost, 'returnCost: the loss').toBeInstanceOf(tf.Tensor);
        const [c, d] = [(await cost!.data())[0]!, (await theirs!.data())[0]!];
        expect(Math.abs(c - d) / d, `step ${s + 1}: cost`).toBeLessThanOrEqual(DRIFT);
        tf.dispose([cost!, theirs!]);
        expect(optimizer.minimize(loss(w1, w2), false, [w1]), 'returnCost false: null').toBeNull();
        reference.minimize(loss(v1, v2), false, [v1]);
      }
      expect(agreement(await readThroughOp(w1), await readThroughOp(v1)).relative).toBeLessThanOrEqual(DRIFT);
      expect(Array.from(await readThroughOp(w2)), 'w2, not in varList').toEqual(Array.from(w2Before));
    } finally {
      tf.dispose([x, y, w1, w2, v1, v2]);
      optimizer.dispose();
      reference.dispose();
    }
  });
});

describe('optimizer.learningRate', () => {
  gpuTest('set between steps, the next step uses it (and getConfig says so); nothing is rebuilt', gpu, async (device) => {
    const p = pair('mlp', { learningRate: 0.01 });
    const data = makeData(tf, 'mlp', 8);
    try {
      await p.ours.trainOnBatch(data.x, data.y);
      await p.theirs.trainOnBatch(data.x, data.y);
      p.optimizer.learningRate = 0.05;
      (p.reference as unknown as { learningRate: number }).learningRate = 0.05;
      const pipelines = vitestSpy(device);
      await p.ours.trainOnBatch(data.x, data.y);
      await p.theirs.trainOnBatch(data.x, data.y);
      expect(pipelines.created(), 'no compute pipeline made for a new learning rate').toBe(0);
      pipelines.restore();
      expect(p.optimizer.getConfig()['learningRate']).toBe(0.05);
      expect(await drift(p.ours, p.theirs)).toBeLessThanOrEqual(DRIFT);
      // A step at 0.05 moves further than one at 0.01 would have: the value took effect.
      const before = await readWeights(tf, p.ours);
      p.optimizer.learningRate = 0;
      await p.ours.trainOnBatch(data.x, data.y);
      const after = await readWeights(tf, p.ours);
      after.forEach((w, i) => expect(Array.from(w), 'learning rate 0: nothing moves').toEqual(Array.from(before[i]!)));
    } finally {
      tf.dispose([data.x, data.y]);
      p.dispose();
    }
  });
});

/** Counts compute pipelines made on the device (TF.js's and ours) until restored. */
function vitestSpy(device: GPUDevice): { created: () => number; restore: () => void } {
  const original = device.createComputePipeline.bind(device);
  let n = 0;
  device.createComputePipeline = (d: GPUComputePipelineDescriptor) => { n++; return original(d); };
  return { created: () => n, restore: () => { device.createComputePipeline = original; } };
}

describe('model.save(..., { includeOptimizer: true }) and loading it back', () => {
  gpuTest('saves the optimizer as WebGPURMSProp with its config and state; the loaded model steps bit for bit as the original', gpu, async () => {
    const p = pair('conv', { learningRate: 0.01, momentum: 0.9, clipGradNorm: 5 });
    const data = makeData(tf, 'conv', 16);
    let loaded: tfl.LayersModel | undefined;
    try {
      for (let s = 0; s < 3; s++) await p.ours.trainOnBatch(data.x, data.y);
      let artifacts: tf.io.ModelArtifacts | undefined;
      await p.ours.save(tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }), { includeOptimizer: true });
      const training = artifacts!.trainingConfig!;
      expect(training.optimizer_config).toEqual({
        class_name: WEBGPU_RMSPROP_CLASS_NAME,
        config: { learningRate: 0.01, decay: 0.9, momentum: 0.9, epsilon: 1e-7, centered: false, clipGradNorm: 5 },
      });
      const specs = artifacts!.weightSpecs!.filter((s) => s.group === 'optimizer').map((s) => s.name);
      const names = p.ours.weights.map((w) => (w.read() as tf.Variable).name);
      expect(specs).toEqual(['iter', ...names.map((n) => `${n}/rms`), ...names.map((n) => `${n}/momentum`)]);
      loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
      const optimizer = loaded.optimizer as WebGPURMSProp;
      expect(optimizer.getClassName()).toBe(WEBGPU_RMSPROP_CLASS_NAME);
      expect(optimizer.options).toEqual(p.optimizer.options);
      expect(optimizer.iterations).toBe(3);
      // The next step: the original and the loaded model, on the same batch.
      await p.ours.trainOnBatch(data.x, data.y);
      await loaded.trainOnBatch(data.x, data.y);
      const [a, b] = [await readWeights(tf, p.ours), await readWeights(tf, loaded)];
      a.forEach((w, i) => expect(Array.from(new Uint32Array(b[i]!.buffer)), `weight ${i}, bit for bit`).toEqual(Array.from(new Uint32Array(w.buffer))));
      const [sa, sb] = [await p.optimizer.getWeights(), await optimizer.getWeights()];
      for (const [i, w] of sa.entries()) {
        expect(Array.from(await sb[i]!.tensor.data()), `state ${w.name}, bit for bit`).toEqual(Array.from(await w.tensor.data()));
      }
    } finally {
      loaded?.dispose();
      (loaded?.optimizer as WebGPURMSProp | undefined)?.dispose();
      tf.dispose([data.x, data.y]);
      p.dispose();
    }
  });
});

describe('getWeights / setWeights: TF.js\'s names and order, exchanged with tf.train.rmsprop', () => {
  async function exchange(from: 'tfjs' | 'ours', config: TfjsRMSPropConfig) {
    const random = rng(from === 'tfjs' ? 2 : 3);
    const shapes = [[3, 4], [4], [4, 2]];
    const values = shapes.map((s) => gradients(random, s.reduce((a, b) => a * b, 1), -1, 0));
    const make = (who: string) => shapes.map((s, i) => tf.variable(onGpu(values[i]!, s), true, `exchange/${from}/${who}/${i}`));
    const first = make('first'), ours = make('ours'), theirs = make('theirs');
    const probe = tfjsRMSProp(tf, config);
    const o = probe.options;
    probe.dispose();
    const newOurs = () => tfjsRMSProp(tf, config);
    const newTheirs = () => tf.train.rmsprop(o.lr, o.alpha, o.momentum, o.eps, o.centered);
    const step = (opt: tf.Optimizer, vars: tf.Variable[], grads: Float32Array[]) => {
      const t = grads.map((g, i) => onGpu(g, shapes[i]));
      opt.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: t[i]! })));
      tf.dispose(t);
    };
    const grads = () => shapes.map((s) => gradients(random, s.reduce((a, b) => a * b, 1)));
    // Three steps with the first optimizer, whose weights then go to both kinds.
    const source = from === 'tfjs' ? newTheirs() : newOurs();
    for (let s = 0; s < 3; s++) step(source, first, grads());
    const saved = await source.getWeights();
    const firstNames = first.map((v) => v.name);
    const slots = ['rms', 'momentum', ...(o.centered ? ['mg'] : [])];
    expect(saved.map((w) => w.name), 'names and order').toEqual(['iter', ...slots.flatMap((s) => firstNames.map((n) => `${n}/${s}`))]);
    expect(saved[0]!.tensor.dtype).toBe('int32');
    const current = await Promise.all(first.map((v) => readThroughOp(v)));
    for (const [i, v] of current.entries()) { ours[i]!.assign(onGpu(v, shapes[i])); theirs[i]!.assign(onGpu(v, shapes[i])); }
    const a = newOurs(), b = newTheirs();
    await a.setWeights(saved);
    await b.setWeights(saved);
    expect(a.iterations).toBe(3);
    // Loaded before the first step: getWeights gives back exactly what was loaded.
    const reread = await a.getWeights();
    for (const [i, w] of saved.entries()) {
      expect(Array.from(await reread[i]!.tensor.data()), `${w.name} loaded`).toEqual(Array.from(await w.tensor.data()));
    }
    const floors = current.map((v) => v.map(Math.abs));
    for (let s = 0; s < 4; s++) {
      const g = grads();
      step(a, ours, g);
      step(b, theirs, g);
      for (const [i, v] of ours.entries()) {
        const expected = await readThroughOp(theirs[i]!);
        expected.forEach((x, j) => { floors[i]![j] = Math.max(floors[i]![j]!, Math.abs(x)); });
        const e = agreement(await readThroughOp(v), expected, floors[i]);
        expect(e.ulps, `from ${from}: step ${s + 1} after loading, variable ${i}`).toBeLessThanOrEqual(TFJS_ULPS);
      }
    }
    const out = await a.getWeights();
    expect(out.map((w) => w.name)).toEqual(['iter', ...slots.flatMap((s) => ours.map((v) => `${v.name}/${s}`))]);
    expect((await out[0]!.tensor.data())[0]).toBe(7);
    tf.dispose([...first, ...ours, ...theirs]);
    for (const x of [source, a, b]) x.dispose();
  }

  for (const from of ['tfjs', 'ours'] as const) {
    gpuTest(`from ${from === 'tfjs' ? 'tf.train.rmsprop' : 'this optimizer'} to both, momentum 0.9: the next steps agree`, gpu, () => exchange(from, { learningRate: 0.01, momentum: 0.9 }));
    gpuTest(`from ${from === 'tfjs' ? 'tf.train.rmsprop' : 'this optimizer'} to both, momentum 0: the next steps agree`, gpu, () => exchange(from, { learningRate: 0.01 }));
  }

  gpuTest('momentum 0: this optimizer saves zeros for /momentum, which tf.train.rmsprop\'s rule multiplies by 0', gpu, async () => {
    const v = tf.variable(onGpu([1, 2, 3]), true, 'exchange/zeros');
    const optimizer = tfjsRMSProp(tf);
    const g = onGpu([0.5, -0.5, 1]);
    optimizer.applyGradients({ [v.name]: g });
    const weights = await optimizer.getWeights();
    expect(weights.map((w) => w.name)).toEqual(['iter', 'exchange/zeros/rms', 'exchange/zeros/momentum']);
    expect(Array.from(await weights[2]!.tensor.data())).toEqual([0, 0, 0]);
    tf.dispose([v, g]);
    optimizer.dispose();
  });

  gpuTest('centered: the /mg slots round-trip bit for bit, and weights without them are refused', gpu, async () => {
    const v = tf.variable(onGpu([1, 2, 3]), true, 'exchange/centered');
    const centered = tfjsRMSProp(tf, { centered: true, momentum: 0.5 });
    const g = onGpu([0.5, -0.5, 1]);
    for (let s = 0; s < 3; s++) centered.applyGradients({ [v.name]: g });
    const saved = await centered.getWeights();
    expect(saved.map((w) => w.name)).toEqual(['iter', `${v.name}/rms`, `${v.name}/momentum`, `${v.name}/mg`]);
    const copy = tfjsRMSProp(tf, { centered: true, momentum: 0.5 });
    copy.applyGradients({ [v.name]: g }); // built: setWeights now loads into the GPU state
    await copy.setWeights(saved);
    const back = await copy.getWeights();
    for (const [i, w] of saved.entries()) expect(Array.from(await back[i]!.tensor.data()), w.name).toEqual(Array.from(await w.tensor.data()));
    const plain = tfjsRMSProp(tf, { momentum: 0.5 });
    await expect(plain.setWeights(saved)).rejects.toThrow(/saved by a centered optimizer, and this one is not/);
    await expect(copy.setWeights(saved.slice(0, 3))).rejects.toThrow(/hold no '\/mg' slots/);
    tf.dispose([v, g]);
    for (const x of [centered, copy, plain]) x.dispose();
  });

  gpuTest('repeated getWeights leaks nothing: the tensors it returns are kept and updated', gpu, async () => {
    const v = tf.variable(onGpu([1, 2, 3]), true, 'exchange/leak');
    const optimizer = tfjsRMSProp(tf, { momentum: 0.9 });
    const g = onGpu([0.5, -0.5, 1]);
    optimizer.applyGradients({ [v.name]: g });
    const first = await optimizer.getWeights();
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      optimizer.applyGradients({ [v.name]: g });
      await optimizer.getWeights();
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect((await first[0]!.tensor.data())[0], 'the first result is the live, updated one').toBe(6);
    const before = tf.memory().numTensors;
    optimizer.dispose();
    expect(tf.memory().numTensors, 'dispose() frees what getWeights made').toBe(before - first.length);
    tf.dispose([v, g]);
  });
});
