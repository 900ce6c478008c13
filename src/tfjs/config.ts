/**
 * The configuration `tfjsRMSProp(tf, config)` takes: TF.js's own option names and defaults
 * (`tf.train.rmsprop(learningRate, decay, momentum, epsilon, centered)`, through `presets.tfjs`),
 * this library's extras under their own names, and what `getConfig()` saves of it.
 */
import { presets, resolveOptions, type RMSPropOptions, type ResolvedOptions } from '../index.js';

/**
 * This library's options that the TF.js optimizer takes as they are, under this library's names
 * (the README's options table). TF.js's own five (`learningRate`, `decay`, `momentum`, `epsilon`,
 * `centered`) are given by their TF.js names instead; the 16-bit dtypes do not apply (TF.js
 * variables are float32). `stateDtype: 'int8-blockwise'` keeps the mean square of each variable of
 * 4096 elements or more in 8 bits on the GPU (docs/blockwise8.md; not with momentum or centered).
 *
 * @example
 * ```ts
 * const extras: TfjsExtras = { clipGradNorm: 1, weightDecay: 1e-4, weightDecayMode: 'decoupled' };
 * const optimizer = tfjsRMSProp(tf, { learningRate: 1e-3, ...extras });
 * ```
 */
export type TfjsExtras = Partial<Pick<RMSPropOptions,
  | 'epsMode' | 'lrInMomentum' | 'weightDecay' | 'weightDecayMode' | 'maximize' | 'initialScale' | 'nesterov'
  | 'biasCorrection' | 'skipNonFinite' | 'clipGradNorm' | 'lossScale' | 'stateDtype'>>;

/**
 * What `tfjsRMSProp(tf, config)` takes: `tf.train.rmsprop`'s options by their TF.js names, with
 * TF.js's defaults (`presets.tfjs`: learningRate 0.001, decay 0.9, momentum 0, epsilon 1e-7 inside
 * the root, centered false), this library's extras ({@link TfjsExtras}), and `fallback`.
 *
 * @example
 * ```ts
 * const config: TfjsRMSPropConfig = { learningRate: 1e-3, momentum: 0.9, clipGradNorm: 1, fallback: 'tfjs' };
 * model.compile({ optimizer: tfjsRMSProp(tf, config), loss: 'meanSquaredError' });
 * ```
 */
export interface TfjsRMSPropConfig extends TfjsExtras {
  /** Learning rate, a finite number >= 0 (TF.js `learningRate`; default 0.001). */
  learningRate?: number;
  /** Decay of the mean square, in [0, 1] (TF.js `decay`; default 0.9). */
  decay?: number;
  /** Momentum, >= 0, with lr inside the buffer as TF.js (TF.js `momentum`; default 0). */
  momentum?: number;
  /** Added inside the root, > 0 (TF.js `epsilon`; default 1e-7, the WebGPU backend's `epsilon()`). */
  epsilon?: number | null;
  /** Centered RMSProp (TF.js `centered`; default false). See the README for how TF.js 4.22's root differs. */
  centered?: boolean;
  /**
   * `'tfjs'`: when TF.js's active backend is not `'webgpu'` when the optimizer is made, return
   * `tf.train.rmsprop(learningRate, decay, momentum, epsilon, centered)` instead of refusing
   * (extras other than the defaults are then refused: TF.js has none of them).
   */
  fallback?: 'tfjs';
}

/** The TF.js names, in `tf.train.rmsprop`'s argument order. */
const TFJS_NAMES = ['learningRate', 'decay', 'momentum', 'epsilon', 'centered'] as const;

const EXTRA_NAMES: readonly (keyof TfjsExtras)[] = [
  'epsMode', 'lrInMomentum', 'weightDecay', 'weightDecayMode', 'maximize', 'initialScale', 'nesterov',
  'biasCorrection', 'skipNonFinite', 'clipGradNorm', 'lossScale', 'stateDtype',
];

/** This library's names that the TF.js config spells otherwise, or that do not apply to TF.js variables. */
const REFUSED: Record<string, string> = {
  lr: "the TF.js optimizer takes TF.js's name: 'learningRate'",
  alpha: "the TF.js optimizer takes TF.js's name: 'decay'",
  eps: "the TF.js optimizer takes TF.js's name: 'epsilon'",
  rho: "the TF.js optimizer calls it 'decay'",
  learning_rate: "the TF.js optimizer calls it 'learningRate'",
  gradDtype: 'TF.js variables and gradients are float32',
  paramDtype: 'TF.js variables are float32',
  masterWeights: 'TF.js variables are float32, so there is no 16-bit parameter to keep a master copy of',
};

/** Keys tfjs-layers adds to a config it deserializes, which are not options. */
const IGNORED = new Set(['customObjects']);

/** A checked config. */
export interface ResolvedTfjsConfig {
  /** The core options the GPU optimizer runs with. */
  readonly options: ResolvedOptions;
  /** TF.js's five, resolved (what `tf.train.rmsprop` would be given for the fallback). */
  readonly tfjs: {
    readonly learningRate: number;
    readonly decay: number;
    readonly momentum: number;
    readonly epsilon: number;
    readonly centered: boolean;
  };
  /** The extras given (only those), for getConfig(). */
  readonly extras: TfjsExtras;
  readonly fallback?: 'tfjs';
}

/**
 * Checks a config and resolves it over `presets.tfjs`. Throws a TypeError or RangeError naming the
 * option by the name the caller used and what to pass instead; nothing else happens.
 *
 * @example
 * ```ts
 * resolveTfjsConfig({ learningRate: 0.01 }).options.alpha; // 0.9, TF.js's decay
 * resolveTfjsConfig({ lr: 0.01 }); // TypeError: config.lr: the TF.js optimizer takes TF.js's name: 'learningRate'
 * ```
 */
export function resolveTfjsConfig(config: unknown = {}, where = 'config'): ResolvedTfjsConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`${where} must be an object such as { learningRate: 0.001 }, got ${describe(config)}.`);
  }
  const given = config as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (IGNORED.has(key) || (TFJS_NAMES as readonly string[]).includes(key) || key === 'fallback') continue;
    if (Object.hasOwn(REFUSED, key)) throw new TypeError(`${where}.${key}: ${REFUSED[key]}.`);
    if (!(EXTRA_NAMES as readonly string[]).includes(key)) {
      throw new TypeError(`${where}.${key} is not an option of the TF.js RMSProp: TF.js's are ` +
        `${TFJS_NAMES.join(', ')}; ` +
        `this library's extras are ${EXTRA_NAMES.join(', ')}; and fallback.`);
    }
  }
  const base = presets.tfjs;
  const pick = (key: string, fallbackValue: unknown): unknown =>
    (given[key] === undefined || given[key] === null ? fallbackValue : given[key]);
  const learningRate = checkLearningRate(pick('learningRate', base.lr), `${where}.learningRate`);
  const decay = checkNumber(pick('decay', base.alpha), `${where}.decay`, (x) => x >= 0 && x <= 1,
    'in [0, 1], such as 0.9');
  const momentum = checkNumber(pick('momentum', base.momentum), `${where}.momentum`, (x) => x >= 0,
    '>= 0, such as 0.9 (0: none)');
  const epsilon = checkNumber(pick('epsilon', base.eps), `${where}.epsilon`, (x) => x > 0, '> 0, such as 1e-7');
  const centered = pick('centered', base.centered);
  if (typeof centered !== 'boolean') {
    throw new TypeError(`${where}.centered must be true or false, got ${describe(centered)}.`);
  }
  const fallback = given.fallback;
  if (fallback !== undefined && fallback !== 'tfjs') {
    throw new TypeError(`${where}.fallback must be 'tfjs' (return tf.train.rmsprop off the WebGPU backend) or ` +
      `left out, got ${describe(fallback)}.`);
  }
  const extras: Record<string, unknown> = {};
  for (const key of EXTRA_NAMES) if (given[key] !== undefined) extras[key] = given[key];
  const ours = { ...extras, lr: learningRate, alpha: decay, momentum, eps: epsilon, centered };
  const options = resolveOptions(ours, base, where);
  return Object.freeze({
    options,
    tfjs: Object.freeze({ learningRate, decay, momentum, epsilon, centered }),
    extras: Object.freeze(extras as TfjsExtras),
    ...(fallback ? { fallback } : {}),
  });
}

/**
 * What `getConfig()` returns, and `fromConfig` takes back: TF.js's five under TF.js's names (with
 * the current learning rate), then the extras that were given, then `fallback` if set.
 *
 * @example
 * ```ts
 * tfjsConfigDict(resolveTfjsConfig({ clipGradNorm: 1 }), 0.002);
 * // { learningRate: 0.002, decay: 0.9, momentum: 0, epsilon: 1e-7, centered: false, clipGradNorm: 1 }
 * ```
 */
export function tfjsConfigDict(
  config: ResolvedTfjsConfig, learningRate: number,
): Record<string, number | boolean | string> {
  return {
    ...config.tfjs,
    learningRate,
    ...(config.extras as Record<string, number | boolean | string>),
    ...(config.fallback ? { fallback: config.fallback } : {}),
  };
}

/** Whether a config asks for more than `tf.train.rmsprop` can do (what the fallback cannot honour). */
export function extrasBeyondTfjs(config: ResolvedTfjsConfig): string[] {
  const o = config.options, base = presets.tfjs;
  return EXTRA_NAMES.filter((key) => o[key] !== base[key]);
}

function checkNumber(value: unknown, where: string, ok: (x: number) => boolean, expected: string): number {
  if (typeof value !== 'number') throw new TypeError(`${where} must be a number ${expected}, got ${describe(value)}.`);
  if (!Number.isFinite(value) || !ok(value)) throw new RangeError(`${where} must be ${expected}; got ${value}.`);
  return value;
}

/**
 * Checks a learning rate: a finite number >= 0. Throws a TypeError or RangeError naming `where`.
 *
 * @example
 * ```ts
 * checkLearningRate(0.01, 'learningRate'); // 0.01
 * ```
 */
export function checkLearningRate(value: unknown, where: string): number {
  return checkNumber(value, where, (x) => x >= 0, '>= 0, such as 0.001');
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return value.constructor?.name ? `a ${value.constructor.name}` : 'an object';
  return String(value);
}
