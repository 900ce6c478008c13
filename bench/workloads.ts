/**
 * What the benchmarks measure: the tensor sets, the optimizer variants, and how many bytes a step
 * must move. Pure data and arithmetic, shared by the Node run, the browser page and the smoke test.
 */
import { presets, type RMSPropOptions } from '../src/index.js';

/** One tensor of a workload: a name and an element count (f32). */
export interface TensorShape {
  readonly name: string;
  readonly size: number;
}

/** A set of tensors that one optimizer updates. */
export interface TensorSet {
  readonly name: string;
  readonly tensors: readonly TensorShape[];
}

/** How our optimizer holds a tensor set: one buffer pair per tensor, or one `ParamArena`. */
export type Layout = 'separate' | 'arena';

/** One optimizer configuration, as ours and as TF.js's `tf.train.rmsprop` arguments. */
export interface Variant {
  readonly name: string;
  /** Our options: `presets.tfjs` (TF.js's defaults: lr 1e-3, decay 0.9, eps 1e-7 inside the root, lr inside momentum). */
  readonly options: Partial<RMSPropOptions>;
  /** `tf.train.rmsprop(learningRate, decay, momentum, epsilon, centered)`, the same rule. */
  readonly tfjs: { readonly learningRate: number; readonly decay: number; readonly momentum: number; readonly epsilon: number; readonly centered: boolean };
}

const tfjsArgs = (o: RMSPropOptions) => ({ learningRate: o.lr, decay: o.alpha, momentum: o.momentum, epsilon: o.eps, centered: o.centered });

/**
 * The two variants the issue asks for. Both use TF.js's hyperparameters (presets.tfjs) on our side,
 * so that the TF.js column compares the same update rule.
 */
export const VARIANTS: readonly Variant[] = [
  { name: 'plain', options: presets.tfjs, tfjs: tfjsArgs(presets.tfjs) },
  (() => {
    const options: RMSPropOptions = { ...presets.tfjs, momentum: 0.9, centered: true };
    return { name: 'momentum 0.9 + centered', options, tfjs: tfjsArgs(options) };
  })(),
  // The plain rule with 8-bit blockwise state (tensors of 4096+ elements; TF.js keeps f32 state).
  { name: 'plain, 8-bit state', options: { ...presets.tfjs, stateDtype: 'int8-blockwise' }, tfjs: tfjsArgs(presets.tfjs) },
];

/**
 * Workload (a): one tensor of `size` elements (16Mi in the full run).
 *
 * @example
 * ```ts
 * singleTensor().tensors; // [{ name: 'w', size: 16777216 }]
 * ```
 */
export function singleTensor(size = 16 * 1024 * 1024): TensorSet {
  return { name: `1 tensor of ${formatCount(size)}`, tensors: [{ name: 'w', size }] };
}

/**
 * Workload (b): a small transformer's parameters. Per layer q, k, v, o (d×d), two layer norms'
 * gain and bias (d each), fc1 (d×ff) and fc2 (ff×d); then a token embedding (vocab×d) and a final
 * layer norm's gain. Defaults: 4 layers, d 256, ff 1024, vocab 4096: 42 tensors, 4,198,656 params.
 *
 * @example
 * ```ts
 * transformer().tensors.length; // 42
 * transformer({ layers: 1, d: 8, ff: 16, vocab: 32 }); // the smoke test's 12 tiny tensors
 * ```
 */
export function transformer({ layers = 4, d = 256, ff = 1024, vocab = 4096 } = {}): TensorSet {
  const tensors: TensorShape[] = [];
  for (let l = 0; l < layers; l++) {
    for (const w of ['q', 'k', 'v', 'o']) tensors.push({ name: `layer${l}.attn.${w}`, size: d * d });
    for (const n of ['ln1', 'ln2']) for (const part of ['gain', 'bias']) tensors.push({ name: `layer${l}.${n}.${part}`, size: d });
    tensors.push({ name: `layer${l}.fc1`, size: d * ff }, { name: `layer${l}.fc2`, size: ff * d });
  }
  tensors.push({ name: 'embedding', size: vocab * d }, { name: 'ln_final.gain', size: d });
  const params = tensors.reduce((n, t) => n + t.size, 0);
  return { name: `transformer, ${tensors.length} tensors, ${formatCount(params)}`, tensors };
}

/**
 * Elements in a tensor set.
 *
 * @example
 * ```ts
 * paramCount(transformer()); // 4198656
 * ```
 */
export function paramCount(set: TensorSet): number {
  return set.tensors.reduce((n, t) => n + t.size, 0);
}

/**
 * Bytes one step must move per parameter under `options`: read p, g, v and write p, v (20 B), plus
 * read and write m when centered (8 B), plus read and write b with momentum (8 B). Anything a
 * framework moves beyond this (temporaries, a momentum buffer it keeps at momentum 0) is its cost.
 * With 8-bit state (stateDtype 'int8-blockwise') v is one byte read and written plus an f32 absmax
 * per 256 elements: 12 + 2 * (1 + 4/256) = 14.03 B (counted for every element: the bench's tensors
 * under 4096 elements, which keep f32 state, are a few hundred in 4.2M).
 *
 * @example
 * ```ts
 * bytesPerParam({ momentum: 0.9, centered: true }); // 36
 * ```
 */
export function bytesPerParam(options: Partial<RMSPropOptions>): number {
  const state = options.stateDtype === 'int8-blockwise' ? 2 * (1 + 4 / 256) : 8;
  return 12 + state + (options.centered ? 8 : 0) + ((options.momentum ?? 0) > 0 ? 8 : 0);
}

/**
 * A short element count for labels.
 *
 * @example
 * ```ts
 * formatCount(16777216); // '16Mi'
 * formatCount(4198656); // '4.2M'
 * ```
 */
export function formatCount(n: number): string {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)}Mi`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  return String(n);
}
