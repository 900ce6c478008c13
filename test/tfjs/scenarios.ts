/**
 * The TF.js drop-in's hazards (issue 19), each as a scenario run beside the expected numbers, shared
 * by the Node tests (test/tfjs/hazards.test.ts) and the browser page (test/browser/tfjs-page/):
 * - a variable list that grows, shrinks and reorders, against one `tf.train.rmsprop` per variable
 *   (TF.js's own keys its state by position: it is run too, to show where it goes wrong);
 * - fine-tuning with `model.fit`: freeze a layer, train, unfreeze, compile again with the same
 *   optimizer, train; against the same model with one `tf.train.rmsprop` per variable;
 * - a read in flight across a step (`v.data()` started, a step, then `data()`, `dataSync()`, and
 *   `model.save()`): every read after the step sees the step's values.
 * Everything takes the caller's TF.js namespaces and optimizer factory; nothing here asserts.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { agreement, type RuleConfig } from './fit-comparison.js';
import { lossOf, makeData, makeModel, readWeights, type Tf, type Tfl } from './models.js';

/** An optimizer that keeps one `tf.train.rmsprop` per variable: what "state per variable" means. */
export function perVariableRMSProp(tf: Tf, rule: RuleConfig): TF.Optimizer {
  const optimizers = new Map<string, TF.Optimizer>();
  class PerVariableRMSProp extends tf.Optimizer {
    override applyGradients(gradients: TF.NamedTensorMap | { name: string; tensor: TF.Tensor }[]): void {
      const entries = Array.isArray(gradients)
        ? gradients.map((g) => [g.name, g.tensor] as const)
        : Object.entries(gradients);
      for (const [name, grad] of entries) {
        if (!grad) continue;
        let o = optimizers.get(name);
        if (!o) {
          o = tf.train.rmsprop(rule.learningRate, rule.decay, rule.momentum, rule.epsilon, rule.centered);
          optimizers.set(name, o);
        }
        o.applyGradients({ [name]: grad });
      }
      this.incrementIterations();
    }

    override dispose(): void {
      for (const o of optimizers.values()) o.dispose();
      optimizers.clear();
      super.dispose();
    }

    override getConfig(): TF.serialization.ConfigDict {
      return { ...rule };
    }
  }
  return new PerVariableRMSProp();
}

/** One comparison: the worst over variables and steps. */
export interface Worst {
  /** ULPs of the largest magnitude each element has had (`agreement`). */
  readonly ulps: number;
  /** Relative to the tensor's largest |expected|. */
  readonly relative: number;
  readonly where: string;
}

/** What {@link variableListScenario} found. */
export interface VariableListResult {
  /** The WebGPU RMSProp against one tf.train.rmsprop per variable, after every step. */
  readonly ours: Worst;
  /** tf.train.rmsprop (one for all, state by position) against the same: where it goes wrong. */
  readonly tfjsOwn: Worst;
  /** minimize(f, false, [a]) then [a, b] with the WebGPU RMSProp: the loss went down, and no throw. */
  readonly minimizeLosses: readonly number[];
  readonly tensorsBefore: number;
  readonly tensorsAfter: number;
}

/**
 * Phases of the variable list: `a` alone, `c` joins first (a's shape), `c` leaves, `c` returns with `b`
 * first. tf.train.rmsprop is run through the first two: in the second it hands c a's accumulators
 * (same shape: silently); in the last it would throw (a broadcast error: b gets c's).
 */
const PHASES: readonly (readonly string[])[] = [['a'], ['c', 'a'], ['a'], ['b', 'c', 'a']];
const SHAPES: Record<string, number[]> = { a: [3, 4], b: [5], c: [3, 4] };

/**
 * Trains variables a, b, c through the phases above (3 steps each, the same gradient tensors for all
 * three optimizers) with `ours()`, one tf.train.rmsprop per variable, and one tf.train.rmsprop.
 */
export async function variableListScenario(tf: Tf, ours: () => TF.Optimizer, rule: RuleConfig): Promise<VariableListResult> {
  const tensorsBefore = tf.memory().numTensors;
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const initial = Object.fromEntries(Object.entries(SHAPES).map(([k, shape]) =>
    [k, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (random() - 0.5) * 4)]));
  const sets = (['ours', 'perVar', 'own'] as const).map((who) => Object.fromEntries(Object.keys(SHAPES).map((k) =>
    [k, variableOf(tf, tf.tensor(initial[k]!, SHAPES[k]), `${who}-${k}-${Math.floor(random() * 1e9)}`)])));
  const optimizers = [ours(), perVariableRMSProp(tf, rule),
    tf.train.rmsprop(rule.learningRate, rule.decay, rule.momentum, rule.epsilon, rule.centered)];
  const floors = Object.fromEntries(Object.keys(SHAPES).map((k) => [k, initial[k]!.map(Math.abs)]));
  let worstOurs: Worst = { ulps: 0, relative: 0, where: '' }, worstOwn: Worst = { ulps: 0, relative: 0, where: '' };
  let step = 0;
  for (const [p, phase] of PHASES.entries()) {
    for (let s = 0; s < 3; s++, step++) {
      const grads = Object.fromEntries(phase.map((k) => [k, tf.tensor(
        Float32Array.from(initial[k]!, () => (random() < 0.5 ? -1 : 1) * 10 ** (-2 + 3 * random())), SHAPES[k])]));
      optimizers.forEach((o, i) => {
        if (i < 2 || p < 2) o.applyGradients(phase.map((k) => ({ name: sets[i]![k]!.name, tensor: grads[k]! })));
      });
      tf.dispose(Object.values(grads));
      for (const k of Object.keys(SHAPES)) {
        const [a, e, own] = await Promise.all(sets.map((set) => readThrough(tf, set[k]!)));
        e!.forEach((x, i) => { floors[k]![i] = Math.max(floors[k]![i]!, Math.abs(x)); });
        const where = `step ${step + 1} ([${phase.join(', ')}]), ${k}`;
        const r = agreement(a!, e!, floors[k]);
        if (r.ulps > worstOurs.ulps || r.relative > worstOurs.relative) worstOurs = { ulps: r.ulps, relative: r.relative, where };
        if (p < 2) {
          const q = agreement(own!, e!, floors[k]);
          if (q.ulps > worstOwn.ulps) worstOwn = { ulps: q.ulps, relative: q.relative, where };
        }
      }
    }
  }
  for (const o of optimizers) o.dispose();
  for (const set of sets) tf.dispose(Object.values(set));

  // minimize with a varList that grows, as a TF.js user writes it.
  const a = variableOf(tf, tf.tensor([1, -2, 3, -4]), `minimize-a-${Math.floor(random() * 1e9)}`);
  const b = variableOf(tf, tf.tensor([0.5, 0.25]), `minimize-b-${Math.floor(random() * 1e9)}`);
  const optimizer = ours();
  const loss = () => tf.add(tf.sum(tf.square(a)), tf.sum(tf.square(b))) as TF.Scalar;
  const minimizeLosses: number[] = [];
  for (const list of [[a], [a], [a, b], [b, a], [b]]) {
    const l = optimizer.minimize(loss, true, list);
    minimizeLosses.push((await l!.data())[0]!);
    l!.dispose();
  }
  optimizer.dispose();
  tf.dispose([a, b]);
  return { ours: worstOurs, tfjsOwn: worstOwn, minimizeLosses, tensorsBefore, tensorsAfter: tf.memory().numTensors };
}

/** A trainable variable of `t`'s values (the variable keeps the data; `t` is disposed). */
function variableOf(tf: Tf, t: TF.Tensor, name: string): TF.Variable {
  const v = tf.variable(t, true, name);
  t.dispose();
  return v;
}

async function readThrough(tf: Tf, v: TF.Tensor): Promise<Float32Array> {
  const copy = tf.mul(v, 1);
  try {
    return new Float32Array(await copy.data());
  } finally {
    copy.dispose();
  }
}

/** What {@link fineTuneScenario} found. */
export interface FineTuneResult {
  /** Per batch, both phases: max over weights of max |ours - theirs| / max |theirs|. */
  readonly relative: readonly number[];
  /** Whether the frozen layer's weights stayed bit for bit during the first phase (ours). */
  readonly frozenKept: boolean;
  readonly firstLoss: number;
  readonly lastLoss: number;
  readonly tensorsBefore: number;
  readonly tensorsAfter: number;
}

/**
 * An MLP: its first layer frozen, compiled, fit 2 epochs (3 batches each); unfrozen, compiled
 * again with the same optimizer, fit 2 more. With `ours()` and with one tf.train.rmsprop per variable.
 */
export async function fineTuneScenario(tf: Tf, tfl: Tfl, ours: () => TF.Optimizer, rule: RuleConfig): Promise<FineTuneResult> {
  const tensorsBefore = tf.memory().numTensors;
  const source = makeModel(tf, tfl, 'mlp', 11);
  const data = makeData(tf, 'mlp', 24, 12);
  const run = async (optimizer: TF.Optimizer) => {
    const model = makeModel(tf, tfl, 'mlp', 5);
    model.setWeights(source.getWeights());
    const firstLayer = () => Promise.all(model.layers[0]!.weights.map((w) => readThrough(tf, w.read())));
    const frozenBefore = await firstLayer();
    const perBatch: { weights: Float32Array[]; loss: number }[] = [];
    const fit = () => model.fit(data.x, data.y, {
      epochs: 2, batchSize: 8, shuffle: false, verbose: 0,
      callbacks: { onBatchEnd: async (_b: number, logs?: TF.serialization.ConfigDict) => {
        perBatch.push({ weights: await readWeights(tf, model), loss: Number(logs?.['loss']) });
      } },
    });
    model.layers[0]!.trainable = false;
    model.compile({ optimizer, loss: lossOf('mlp') });
    await fit();
    const frozenAfter = await firstLayer();
    const frozenKept = [0, 1].every((w) => frozenAfter[w]!.every((x, i) => Object.is(x, frozenBefore[w]![i])));
    model.layers[0]!.trainable = true;
    model.compile({ optimizer, loss: lossOf('mlp') });
    await fit();
    model.dispose();
    optimizer.dispose();
    return { perBatch, frozenKept };
  };
  const a = await run(ours());
  const b = await run(perVariableRMSProp(tf, rule));
  source.dispose();
  tf.dispose([data.x, data.y]);
  const relative = a.perBatch.map((batch, k) => Math.max(...batch.weights.map((w, t) => {
    const e = b.perBatch[k]!.weights[t]!;
    let largest = 0, diff = 0;
    e.forEach((x, i) => { largest = Math.max(largest, Math.abs(x)); diff = Math.max(diff, Math.abs(w[i]! - x)); });
    return Number.isNaN(diff) ? Infinity : diff / (largest || 1);
  })));
  const losses = a.perBatch.map((x) => x.loss);
  return {
    relative, frozenKept: a.frozenKept,
    firstLoss: losses.slice(0, 3).reduce((x, y) => x + y) / 3, lastLoss: losses.slice(-3).reduce((x, y) => x + y) / 3,
    tensorsBefore, tensorsAfter: tf.memory().numTensors,
  };
}

/** What {@link readInFlightScenario} found. */
export interface ReadInFlightResult {
  /** How the read started before the step ended: 'resolved' (with which values) or 'rejected'. */
  readonly inFlight: 'resolved pre-step' | 'resolved post-step' | 'resolved other' | 'rejected';
  /** data() after the step against the reference's post-step values (ULPs, agreement). */
  readonly dataUlps: number;
  /** dataSync() after the step: the same (undefined where dataSync cannot run: Node). */
  readonly dataSyncUlps: number | undefined;
  /**
   * model.save() after steps taken while a data() of every weight was in flight, against the same
   * with tf.train.rmsprop: max |ours - theirs| / max |theirs| over the weights.
   */
  readonly saveRelative: number;
  readonly tensorsBefore: number;
  readonly tensorsAfter: number;
}

/**
 * One variable on the GPU: `data()` started, a step, the read awaited; then `data()` and
 * `dataSync()`. And a model whose weights are read with data() while `trainOnBatch` steps, then
 * saved. Beside the same with tf.train.rmsprop (which assigns a new buffer every step).
 */
export async function readInFlightScenario(
  tf: Tf, tfl: Tfl, ours: () => TF.Optimizer, rule: RuleConfig, { dataSync = true } = {},
): Promise<ReadInFlightResult> {
  const tensorsBefore = tf.memory().numTensors;
  const reference = () => tf.train.rmsprop(rule.learningRate, rule.decay, rule.momentum, rule.epsilon, rule.centered);
  const values = Float32Array.from({ length: 40 }, (_, i) => Math.sin(i) * 2);
  const onGpu = (x: Float32Array) => tf.tidy(() => { const t = tf.tensor(x); return tf.add(t, tf.zerosLike(t)); });
  const id = Math.floor(Math.random() * 1e9);
  const [v, w] = [onGpu(values), onGpu(values)];
  const ourVar = tf.variable(v, true, `inflight-ours-${id}`), theirVar = tf.variable(w, true, `inflight-theirs-${id}`);
  tf.dispose([v, w]);
  const [o, r] = [ours(), reference()];
  const grad = tf.tensor(Float32Array.from(values, (x) => x * 0.3 + 0.1));
  o.applyGradients({ [ourVar.name]: grad }); // the first step: the variable's buffer is now written in place
  r.applyGradients({ [theirVar.name]: grad });
  const pre = await readThrough(tf, ourVar);
  // In flight across the next step; settled into a value at once, so that a rejection is never unhandled.
  const started = ourVar.data().then((values) => ({ values }), () => undefined);
  o.applyGradients({ [ourVar.name]: grad });
  r.applyGradients({ [theirVar.name]: grad });
  const post = await readThrough(tf, theirVar);
  let inFlight: ReadInFlightResult['inFlight'];
  const settled = await started;
  if (settled === undefined) {
    inFlight = 'rejected';
  } else {
    const got = new Float32Array(settled.values);
    inFlight = got.every((x, i) => Object.is(x, pre[i])) ? 'resolved pre-step'
      : agreement(got, post).ulps < 64 ? 'resolved post-step' : 'resolved other';
  }
  const dataUlps = agreement(new Float32Array(await ourVar.data()), post).ulps;
  const dataSyncUlps = dataSync ? agreement(new Float32Array(ourVar.dataSync()), post).ulps : undefined;
  grad.dispose();
  o.dispose();
  r.dispose();
  tf.dispose([ourVar, theirVar]);

  // A page that draws the weights while training: a data() of every weight in flight as each step
  // begins (started inside applyGradients, so that no await lets it finish first); then save.
  const data = makeData(tf, 'mlp', 8, 21);
  const saved = async (optimizer: TF.Optimizer) => {
    const model = makeModel(tf, tfl, 'mlp', 22);
    const reads: Promise<unknown>[] = [];
    const apply = optimizer.applyGradients.bind(optimizer);
    optimizer.applyGradients = (gradients) => {
      for (const w of model.weights) reads.push(w.read().data().catch(() => undefined));
      apply(gradients);
    };
    model.compile({ optimizer, loss: lossOf('mlp') });
    for (let s = 0; s < 3; s++) await model.trainOnBatch(data.x, data.y);
    await Promise.all(reads);
    let weights: Float32Array[] = [];
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
      const all = new Float32Array(artifacts.weightData as ArrayBuffer);
      let at = 0;
      weights = (artifacts.weightSpecs ?? []).map((spec) => {
        const n = spec.shape.reduce((x, y) => x * y, 1);
        return all.slice(at, (at += n));
      });
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    model.dispose();
    optimizer.dispose();
    return weights;
  };
  const mine = await saved(ours()), theirs = await saved(reference());
  tf.dispose([data.x, data.y]);
  const saveRelative = Math.max(...mine.map((x, i) => agreement(x, theirs[i]!).relative));
  return { inFlight, dataUlps, dataSyncUlps, saveRelative, tensorsBefore, tensorsAfter: tf.memory().numTensors };
}
