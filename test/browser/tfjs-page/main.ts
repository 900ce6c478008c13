/**
 * The TF.js integration on a browser's own WebGPU: TF.js (a bundle of tfjs-core, tfjs-layers and the
 * WebGPU backend, built by test/browser/tfjs.test.ts) on the page's device, `tfjsRMSProp` from the
 * source. The cases: model.fit of an MLP and a conv net beside tf.train.rmsprop, compared after
 * every batch (weights read through an op, and with data()); save and load with the optimizer;
 * data() before every step; 100 steps without a leak; 8-bit state (issue 20) saved and loaded; and issue 19's: a variable list that changes
 * (against one tf.train.rmsprop per variable), fine-tuning with fit, a read in flight across a step,
 * the first step's warm-up, the copies a step makes. Uses only `navigator.gpu` and web APIs (no
 * Chromium-only flag or API): it runs in any browser with WebGPU. Sets `window.__tfjs`.
 */
import { adapterWords } from '../../../demo/check/compare';
import { tfjsRMSProp, type WebGPURMSProp } from '../../../src/tfjs/index';
import { agreement, compareFit, type RuleConfig } from '../../tfjs/fit-comparison';
import { lossOf, makeData, makeModel, readWeights, type ModelKind } from '../../tfjs/models';
import { fineTuneScenario, readInFlightScenario, variableListScenario } from '../../tfjs/scenarios';
import type { Counts, TfjsCase, TfjsPageResults } from './cases';

type Bundle = typeof import('../../../bench/web/tfjs-entry');
const BUNDLE = '/dist-test/tfjs-web/tfjs.js';

const RULES: Record<string, RuleConfig> = {
  plain: { learningRate: 0.01, decay: 0.9, momentum: 0, epsilon: 1e-7, centered: false },
  momentum: { learningRate: 0.003, decay: 0.9, momentum: 0.9, epsilon: 1e-7, centered: false },
};

type Tf = Bundle['tf'];
type LayersModel = import('@tensorflow/tfjs-layers').LayersModel;
type ModelArtifacts = import('@tensorflow/tfjs-core').io.ModelArtifacts;

/** `model` saved in memory with its optimizer (`includeOptimizer`), as `model.save` hands it to a handler. */
async function saveWithOptimizer(tf: Tf, model: LayersModel): Promise<ModelArtifacts> {
  let artifacts: ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }), { includeOptimizer: true });
  return artifacts!;
}

async function run(): Promise<TfjsPageResults> {
  if (!navigator.gpu) throw new Error('navigator.gpu is missing (Chromium on Linux needs --enable-unsafe-webgpu).');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('requestAdapter() returned null.');
  const device = await adapter.requestDevice({ label: 'webgpu-rmsprop tfjs page' });
  const gpuErrors: string[] = [];
  device.addEventListener('uncapturederror', (e) => gpuErrors.push(`uncaptured: ${(e as GPUUncapturedErrorEvent).error.message}`));
  void device.lost.then((info) => gpuErrors.push(`device lost (${info.reason}): ${info.message}`));
  const words = adapterWords(adapter.info);
  const { tf, tfl, WebGPUBackend } = (await import(/* @vite-ignore */ BUNDLE)) as Bundle;
  tf.env().set('IS_TEST', true);
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device));
  if (!(await tf.setBackend('webgpu'))) throw new Error('TF.js could not start its WebGPU backend.');

  const cases: TfjsCase[] = [];
  const guarded = async (label: string, body: () => Promise<TfjsCase>) => {
    device.pushErrorScope('validation');
    try {
      cases.push(await body());
    } catch (error) {
      cases.push({ name: 'error', label, message: error instanceof Error ? error.stack ?? error.message : String(error) });
    }
    await device.queue.onSubmittedWorkDone();
    const e = await device.popErrorScope();
    if (e) gpuErrors.push(`${label}: ${e.message}`);
    console.log(`${label}: done`);
  };

  const fits: [ModelKind, string, 'op' | 'data'][] = [['mlp', 'plain', 'op'], ['mlp', 'momentum', 'data'], ['conv', 'momentum', 'op'], ['conv', 'plain', 'data']];
  for (const [kind, rule, read] of fits) {
    const label = `fit ${kind} ${rule} (read ${read})`;
    await guarded(label, async () => ({
      name: 'fit', label,
      result: await compareFit(tf, tfl, () => tfjsRMSProp(tf, RULES[rule]!), kind, RULES[rule]!, { epochs: 3, batchSize: 8, samples: 24, read }),
    }));
  }

  await guarded('save-load', async () => {
    const model = makeModel(tf, tfl, 'conv', 5);
    const data = makeData(tf, 'conv', 16);
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.9 });
    model.compile({ optimizer, loss: lossOf('conv') });
    for (let s = 0; s < 3; s++) await model.trainOnBatch(data.x, data.y);
    const artifacts = await saveWithOptimizer(tf, model);
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
    const loadedOptimizer = loaded.optimizer as WebGPURMSProp;
    await model.trainOnBatch(data.x, data.y);
    await loaded.trainOnBatch(data.x, data.y);
    const [a, b] = [await readWeights(tf, model), await readWeights(tf, loaded)];
    const bitIdentical = a.every((w, i) => w.length === b[i]!.length && w.every((x, j) => Object.is(x, b[i]![j])));
    const result: TfjsCase = { name: 'save-load', bitIdentical, className: loadedOptimizer.getClassName(), iterations: loadedOptimizer.iterations };
    loadedOptimizer.dispose();
    loaded.dispose();
    optimizer.dispose();
    model.dispose();
    tf.dispose([data.x, data.y]);
    return result;
  });

  // Issue 20: 8-bit state (its 72 x 72 kernel, 5184 elements, in 8 bits) saved and loaded with the model.
  await guarded('save-load-8bit', async () => {
    const make = () => {
      const m = tfl.sequential({ layers: [
        tfl.layers.dense({ units: 72, activation: 'tanh', inputShape: [8] }),
        tfl.layers.dense({ units: 72, activation: 'tanh' }),
        tfl.layers.dense({ units: 1 }),
      ] });
      let seed = 7;
      const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
      const values = m.weights.map((w) => tf.tensor(Float32Array.from({ length: w.shape.reduce((a, b) => a! * b!, 1)! }, () => random() * 0.2), w.shape as number[]));
      m.setWeights(values);
      tf.dispose(values);
      return m;
    };
    const model = make();
    const data = makeData(tf, 'mlp', 16);
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, stateDtype: 'int8-blockwise' });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    for (let s = 0; s < 3; s++) await model.trainOnBatch(data.x, data.y);
    const artifacts = await saveWithOptimizer(tf, model);
    const eightBitSpecs = artifacts.weightSpecs!.filter((s) => s.group === 'optimizer' && /\/rms\/(codes|absmax)$/.test(s.name))
      .map((s) => `${s.name.replace(/^.*\/rms\//, '')}:${s.dtype}`);
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
    const loadedOptimizer = loaded.optimizer as WebGPURMSProp;
    for (let s = 0; s < 2; s++) {
      await model.trainOnBatch(data.x, data.y);
      await loaded.trainOnBatch(data.x, data.y);
    }
    const [a, b] = [await readWeights(tf, model), await readWeights(tf, loaded)];
    const bitIdentical = a.every((w, i) => w.length === b[i]!.length && w.every((x, j) => Object.is(x, b[i]![j])));
    const result: TfjsCase = {
      name: 'save-load-8bit', bitIdentical, stateDtype: loadedOptimizer.options.stateDtype, eightBitSpecs,
      iterations: loadedOptimizer.iterations,
    };
    loadedOptimizer.dispose();
    loaded.dispose();
    optimizer.dispose();
    model.dispose();
    tf.dispose([data.x, data.y]);
    return result;
  });

  // data() before every step (TF.js then holds a CPU copy). Not dataSync(): TF.js 4.22 reads a WebGPU
  // tensor synchronously through an OffscreenCanvas, which in headless Chromium on SwiftShader returns
  // zeros and destroys the device, with or without this optimizer.
  await guarded('cached', async () => {
    let seed = 11;
    const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
    const initial = Float32Array.from({ length: 37 }, random);
    const onGpu = (x: Float32Array) => tf.tidy(() => { const t = tf.tensor(x); return tf.add(t, tf.zerosLike(t)); });
    const ours = tf.variable(onGpu(initial), true, 'page/ours'), theirs = tf.variable(onGpu(initial), true, 'page/theirs');
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.9 });
    const reference = tf.train.rmsprop(0.01, 0.9, 0.9);
    const floor = initial.map(Math.abs);
    let worst = 0, cached = true;
    for (let s = 0; s < 5; s++) {
      const before = await ours.data(); // TF.js keeps these values on the CPU
      const map = (tf.backend() as unknown as { tensorMap: { get(id: object): { values?: unknown } } }).tensorMap;
      cached &&= map.get(ours.dataId)?.values != null && before.length === 37;
      const g = onGpu(Float32Array.from({ length: 37 }, () => random() * 3));
      optimizer.applyGradients({ [ours.name]: g });
      reference.applyGradients({ [theirs.name]: g });
      g.dispose();
      const expected = new Float32Array(await theirs.data());
      expected.forEach((x, i) => { floor[i] = Math.max(floor[i]!, Math.abs(x)); });
      worst = Math.max(worst, agreement(new Float32Array(await ours.data()), expected, floor).ulps);
    }
    optimizer.dispose();
    reference.dispose();
    tf.dispose([ours, theirs]);
    return { name: 'cached', worstUlps: worst, steps: 5, cachedBeforeEachStep: cached };
  });

  for (const rule of ['plain', 'momentum']) {
    await guarded(`variable-list ${rule}`, async () => ({
      name: 'variable-list', label: rule, result: await variableListScenario(tf, () => tfjsRMSProp(tf, RULES[rule]!), RULES[rule]!),
    }));
    await guarded(`fine-tune ${rule}`, async () => ({
      name: 'fine-tune', label: rule, result: await fineTuneScenario(tf, tfl, () => tfjsRMSProp(tf, RULES[rule]!), RULES[rule]!),
    }));
  }

  await guarded('read-in-flight', async () => {
    // `?dataSync=1` where probe.html found the canvas readback TF.js's dataSync uses working (see probe.ts).
    const dataSync = new URLSearchParams(location.search).get('dataSync') === '1';
    const result = await readInFlightScenario(tf, tfl, () => tfjsRMSProp(tf, RULES['momentum']!), RULES['momentum']!, { dataSync });
    return { name: 'read-in-flight', result, dataSync };
  });

  await guarded('first-step', async () => {
    const labels: string[] = [];
    const original = device.createComputePipelineAsync.bind(device);
    device.createComputePipelineAsync = (d: GPUComputePipelineDescriptor) => { labels.push(d.label ?? ''); return original(d); };
    let warm: WebGPURMSProp, cold: WebGPURMSProp;
    try {
      warm = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.25, centered: true }); // variants no other case builds
      cold = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.75, centered: true, clipGradNorm: 1e30 });
    } finally {
      device.createComputePipelineAsync = original;
    }
    const constructorCompiles = labels.filter((l) => l.startsWith('RMSProp.pipeline')).length;
    const start = tf.tidy(() => tf.add(tf.tensor([1, 2, 3]), tf.zerosLike(tf.tensor([0, 0, 0]))));
    const a = tf.variable(start, true, 'page/warm-a'), b = tf.variable(start, true, 'page/warm-b');
    start.dispose();
    const g = tf.tensor([0.5, -1, 2]);
    await warm.ready();
    let t0 = performance.now();
    warm.applyGradients({ [a.name]: g });
    const warmMs = performance.now() - t0;
    t0 = performance.now();
    cold.applyGradients({ [b.name]: g });
    const coldMs = performance.now() - t0;
    const result: TfjsCase = { name: 'first-step', warm: warm.firstStep, cold: cold.firstStep, warmMs, coldMs, constructorCompiles };
    await cold.ready();
    warm.dispose();
    cold.dispose();
    tf.dispose([a, b, g]);
    return result;
  });

  await guarded('copies', async () => {
    let copies = 0;
    const original = device.createCommandEncoder.bind(device);
    device.createCommandEncoder = (d?: GPUCommandEncoderDescriptor) => {
      const encoder = original(d);
      if (d?.label?.startsWith('WebGPURMSProp.step')) {
        const copy = encoder.copyBufferToBuffer.bind(encoder) as (...args: unknown[]) => void;
        (encoder as { copyBufferToBuffer: unknown }).copyBufferToBuffer = (...args: unknown[]) => { copies++; copy(...args); };
      }
      return encoder;
    };
    const n = 5;
    const onGpu = (x: number[]) => tf.tidy(() => { const t = tf.tensor(x); return tf.add(t, tf.zerosLike(t)); });
    const vars = Array.from({ length: n }, (_, i) => {
      const t = onGpu([i, i + 1, i + 2]);
      const v = tf.variable(t, true, `page/copies-${i}`);
      t.dispose();
      return v;
    });
    const optimizer = tfjsRMSProp(tf, { learningRate: 0.01 });
    try {
      const step = () => {
        const g = Object.fromEntries(vars.map((v) => [v.name, onGpu([0.1, 0.2, 0.3])]));
        optimizer.applyGradients(g);
        tf.dispose(Object.values(g));
      };
      step();
      const firstStep = copies;
      copies = 0;
      for (let s = 0; s < 3; s++) step();
      return { name: 'copies', variables: n, firstStep, perStep: copies / 3 };
    } finally {
      device.createCommandEncoder = original;
      optimizer.dispose();
      tf.dispose(vars);
    }
  });

  await guarded('leaks', async () => {
    const created: { label: string; destroyed: boolean }[] = [];
    const original = device.createBuffer.bind(device);
    device.createBuffer = (d: GPUBufferDescriptor) => {
      const buffer = original(d);
      const entry = { label: d.label ?? '', destroyed: false };
      const destroy = buffer.destroy.bind(buffer);
      buffer.destroy = () => { entry.destroyed = true; destroy(); };
      created.push(entry);
      return buffer;
    };
    const counts = (): Counts => {
      const m = tf.memory() as { numTensors: number; numBytesAllocatedInGPU?: number };
      return { tensors: m.numTensors, gpuBytesAllocated: m.numBytesAllocatedInGPU, liveGpuBuffers: created.filter((e) => !e.destroyed).length };
    };
    const labelled = () => created.filter((e) => !e.destroyed && /^(WebGPURMSProp|RMSProp)/.test(e.label)).length;
    try {
      const model = makeModel(tf, tfl, 'mlp', 6);
      const data = makeData(tf, 'mlp', 16);
      const optimizer = tfjsRMSProp(tf, { learningRate: 0.01, momentum: 0.9 });
      model.compile({ optimizer, loss: lossOf('mlp') });
      for (let s = 0; s < 10; s++) await model.trainOnBatch(data.x, data.y);
      const before = counts();
      for (let s = 0; s < 100; s++) await model.trainOnBatch(data.x, data.y);
      await device.queue.onSubmittedWorkDone();
      const after = counts();
      const labelledWhileTraining = labelled();
      optimizer.dispose();
      const labelledAfterDispose = labelled();
      model.dispose();
      tf.dispose([data.x, data.y]);
      return { name: 'leaks', before, after, labelledWhileTraining, labelledAfterDispose };
    } finally {
      device.createBuffer = original;
    }
  });
  return { done: true, adapter: words, cases, gpuErrors };
}

run().then(
  (results) => { window.__tfjs = results; },
  (error: unknown) => {
    console.error(error);
    window.__tfjs = { done: true, adapter: '', cases: [], gpuErrors: [], fatal: error instanceof Error ? error.stack ?? error.message : String(error) };
  },
);
