/**
 * `model.fit` with the WebGPU RMSProp beside the same model with `tf.train.rmsprop`, from the same
 * weights, on the same data in the same order, with every weight compared after every batch. Shared
 * by the Node tests and the browser page (it takes the caller's TF.js namespaces and optimizer factory).
 */
import type * as TF from '@tensorflow/tfjs-core';
import { lossOf, makeData, makeModel, readWeights, type ModelKind, type Tf, type Tfl } from './models.js';

/**
 * How far the WebGPU RMSProp may be from `tf.train.rmsprop` given the same gradients, in ULPs of the
 * largest magnitude the element has had: 9, the bound test/unit/tfjs.test.ts derives for the rule's
 * two orders of rounding (TF.js rounds `square(g) * (1 - decay)`, this library `((1 - decay) * g) * g`,
 * up to 1/2 ULP of v a step, which momentum accumulates). Measured on the GPU by agreement.test.ts: 6.
 */
export const TFJS_ULPS = 9;

/**
 * How far two `model.fit` runs (ours, TF.js's) may drift apart after `batches` steps, relative to
 * each tensor's largest weight M, derived from the per-step bound:
 * - a step given the same weights and gradients differs by at most TFJS_ULPS ULPs of the element's
 *   largest magnitude, which is at most M; an f32 ULP of x is at most 2^-23 |x|: so one step adds at
 *   most TFJS_ULPS * 2^-23 * M;
 * - a difference already there carries through the next step unchanged (p - update: the update is
 *   the same function of the same gradient), and the steps' differences add: after k batches,
 *   k * TFJS_ULPS * 2^-23 * M;
 * - the one term the per-step bound does not cover is the gradient's response to the weights'
 *   difference (each batch's gradients are computed from the drifted weights). RMSProp divides the
 *   gradient by its own running root mean square, so a relative change of the gradient moves the
 *   update by a fraction of it; over a few batches this is second order, and it is what the
 *   measurements show (9 batches: 6.1e-7 worst, SwiftShader; 3.5e-7 lavapipe; the bound for 9 is 9.7e-6).
 * The loss of a batch is computed by the same ops from the two sets of weights, so its relative
 * difference is held to the same bound (measured: 5.3e-7 at 9 batches).
 * A broken variant, eps outside the root (PyTorch's placement) instead of TF.js's inside, exceeds
 * it from the first batch (fit.test.ts runs it).
 */
export function fitDrift(batches: number): number {
  return batches * TFJS_ULPS * 2 ** -23;
}

/** The bound over the 9 batches (3 epochs of 3) of fit.test.ts and the browser page: 9.7e-6. */
export const FIT_DRIFT = fitDrift(9);

/** TF.js's five options, as both optimizers take them. */
export interface RuleConfig {
  readonly learningRate: number;
  readonly decay: number;
  readonly momentum: number;
  readonly epsilon: number;
  readonly centered: boolean;
}

/** One batch: the worst weight difference over the model's tensors, and both losses. */
export interface BatchAgreement {
  readonly batch: number;
  /** max over tensors of max |ours - theirs| / max |theirs| (of that tensor). */
  readonly relative: number;
  /** Which tensor that was (the layer weight's name). */
  readonly tensor: string;
  readonly lossOurs: number;
  readonly lossTheirs: number;
}

/** What {@link compareFit} found. */
export interface FitComparison {
  readonly kind: ModelKind;
  readonly batches: readonly BatchAgreement[];
  /** The worst `relative` over every batch. */
  readonly worstRelative: number;
  /** The worst |lossOurs - lossTheirs| / |lossTheirs| over every batch. */
  readonly worstLoss: number;
  /** Whether the model the two copied their weights from (sharing its data) kept its values. */
  readonly sourceUnchanged: boolean;
  /** The mean loss of the first and of the last epoch (ours; the same batches): training did something. */
  readonly firstLoss: number;
  readonly lastLoss: number;
  /** tf.memory().numTensors before and after (everything made here is disposed). */
  readonly tensorsBefore: number;
  readonly tensorsAfter: number;
}

/**
 * Trains `kind` twice with `model.fit` (`epochs`, `batchSize`, no shuffling), once with `ours()`,
 * once with `tf.train.rmsprop(...rule)`, each from weights assigned from one source model (so both
 * share its data until their first step), and compares after every batch. `read`: how weights are
 * read after each batch ('op' leaves TF.js no CPU copy; 'data' does, every batch).
 */
export async function compareFit(
  tf: Tf, tfl: Tfl, ours: () => TF.Optimizer, kind: ModelKind, rule: RuleConfig,
  { epochs = 3, batchSize = 8, samples = 48, read = 'op' as 'op' | 'data' } = {},
): Promise<FitComparison> {
  const tensorsBefore = tf.memory().numTensors;
  const source = makeModel(tf, tfl, kind, 7);
  const initial = await readWeights(tf, source);
  const data = makeData(tf, kind, samples, 8);
  const run = async (optimizer: TF.Optimizer) => {
    const model = makeModel(tf, tfl, kind, 99);
    model.setWeights(source.getWeights()); // assigns the source's variables: the two share data
    model.compile({ optimizer, loss: lossOf(kind) });
    const perBatch: { weights: Float32Array[]; loss: number }[] = [];
    await model.fit(data.x, data.y, {
      epochs, batchSize, shuffle: false, verbose: 0,
      callbacks: { onBatchEnd: async (_batch: number, logs?: TF.serialization.ConfigDict) => {
        perBatch.push({ weights: await readWeights(tf, model, read), loss: Number(logs?.['loss']) });
      } },
    });
    const names = model.weights.map((w) => w.originalName);
    model.dispose();
    optimizer.dispose();
    return { perBatch, names };
  };
  const a = await run(ours());
  const sourceAfterOurs = await readWeights(tf, source);
  const b = await run(tf.train.rmsprop(rule.learningRate, rule.decay, rule.momentum, rule.epsilon, rule.centered));
  const sourceUnchanged = initial.every((w, i) => w.every((x, j) => Object.is(x, sourceAfterOurs[i]![j])));
  source.dispose();
  tf.dispose([data.x, data.y]);
  const perEpoch = Math.ceil(samples / batchSize);
  const batches = a.perBatch.map((ours, batch): BatchAgreement => {
    const theirs = b.perBatch[batch]!;
    let relative = -1, tensor = '';
    ours.weights.forEach((w, t) => {
      const expected = theirs.weights[t]!;
      let largest = 0, diff = 0;
      expected.forEach((x, i) => {
        largest = Math.max(largest, Math.abs(x));
        const d = Math.abs(w[i]! - x);
        diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
      });
      const r = diff / (largest || 1);
      if (r > relative) { relative = r; tensor = a.names[t]!; }
    });
    return { batch, relative, tensor, lossOurs: ours.loss, lossTheirs: theirs.loss };
  });
  return {
    kind,
    batches,
    worstRelative: Math.max(...batches.map((x) => x.relative)),
    worstLoss: Math.max(...batches.map((x) => Math.abs(x.lossOurs - x.lossTheirs) / Math.abs(x.lossTheirs))),
    sourceUnchanged,
    firstLoss: mean(batches.slice(0, perEpoch).map((x) => x.lossOurs)),
    lastLoss: mean(batches.slice(-perEpoch).map((x) => x.lossOurs)),
    tensorsBefore,
    tensorsAfter: tf.memory().numTensors,
  };
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * The worst error of `actual` against `expected`, in ULPs of max(|actual|, |expected|, floor[i]) per
 * element (floor: the largest magnitude the element has had, as test/unit/tfjs.test.ts measures),
 * NaN against a number being Infinity; and the worst relative to the tensor's largest |expected|.
 */
export function agreement(actual: Float32Array, expected: Float32Array, floor?: Float32Array): { ulps: number; relative: number; at: number } {
  let ulps = 0, relative = 0, at = -1;
  let largest = 0;
  for (const x of expected) largest = Math.max(largest, Math.abs(x));
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (Object.is(a, e)) continue;
    const err = Number.isFinite(a) && Number.isFinite(e) ? Math.abs(a - e) / ulpOf(Math.max(Math.abs(a), Math.abs(e), floor?.[i] ?? 0)) : Infinity;
    if (err > ulps) { ulps = err; at = i; }
    relative = Math.max(relative, Number.isFinite(err) ? Math.abs(a - e) / (largest || 1) : Infinity);
  }
  return { ulps, relative, at };
}

const scratch = new DataView(new ArrayBuffer(4));

/** The ULP of f32 values of magnitude `x` (the gap from fround(x) to the next f32 up; FLT_MIN's below it). */
function ulpOf(x: number): number {
  const f = Math.max(Math.fround(x), 2 ** -126);
  scratch.setFloat32(0, f);
  scratch.setUint32(0, scratch.getUint32(0) + 1);
  return scratch.getFloat32(0) - f;
}
