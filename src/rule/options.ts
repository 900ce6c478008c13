/**
 * Options of the RMSProp update rule: their types, PyTorch's defaults, the framework presets,
 * and validation. Names follow PyTorch's `torch.optim.RMSprop`; see the options table in the README
 * for Keras, TF1, TF.js and Optax names.
 */

import type { LrSchedule } from './schedules.js';

/**
 * Where `eps` enters the denominator: `sqrt(v) + eps` (PyTorch) or `sqrt(v + eps)` (Keras, TF, Optax).
 *
 * @example
 * ```ts
 * const epsMode: EpsMode = 'inside';
 * new RMSProp(device, params, { eps: 1e-7, epsMode }); // denominator sqrt(v + 1e-7), as Keras
 * ```
 */
export type EpsMode = 'outside' | 'inside';

/**
 * How `weightDecay` applies: `'l2'` adds `weightDecay * p` to the gradient (PyTorch `RMSprop`);
 * `'decoupled'` shrinks the parameter before the step, `p *= 1 - lr * weightDecay` (AdamW, Keras 3).
 *
 * @example
 * ```ts
 * const weightDecayMode: WeightDecayMode = 'decoupled';
 * new RMSProp(device, params, { lr: 1e-3, weightDecay: 0.01, weightDecayMode });
 * ```
 */
export type WeightDecayMode = 'l2' | 'decoupled';

/**
 * What a gradient buffer holds: f32, or 16-bit floats two per u32 (element 2k in the low half of word k).
 *
 * @example
 * ```ts
 * const gradDtype: GradDtype = 'bf16';
 * device.queue.writeBuffer(gradBuffer, 0, encodeHalves(gradValues, gradDtype)); // gradValues: a Float32Array
 * new RMSProp(device, [{ param: weights, grad: gradBuffer }], { gradDtype });
 * ```
 */
export type GradDtype = 'f32' | 'f16' | 'bf16';

/**
 * What a parameter buffer holds: f32, or 16-bit floats two per u32, as {@link GradDtype}.
 *
 * @example
 * ```ts
 * const paramDtype: ParamDtype = 'f16';
 * // f16 weights and gradients, with an f32 master copy in the optimizer's state (masterWeights, the default)
 * new RMSProp(device, [{ param: halfWeights, grad: halfGrads }], { paramDtype, gradDtype: 'f16' });
 * ```
 */
export type ParamDtype = 'f32' | 'f16' | 'bf16';

/**
 * How the optimizer stores its state: `'f32'`, or `'int8-blockwise'`, bitsandbytes' 8-bit format
 * (one uint8 code of its signed dynamic map per element, one f32 absmax per 256 elements; tensors
 * under 4096 elements keep f32 state): about 1.02 bytes per parameter instead of 4. See
 * docs/blockwise8.md.
 *
 * @example
 * ```ts
 * const stateDtype: StateDtype = 'int8-blockwise';
 * new RMSProp(device, params, { lr: 1e-3, stateDtype }); // v in 8 bits for tensors of 4096 elements or more
 * ```
 */
export type StateDtype = 'f32' | 'int8-blockwise';

/**
 * Hyperparameters of one RMSProp step. Every field is optional where an options object is taken;
 * missing fields take PyTorch's defaults ({@link DEFAULT_OPTIONS}).
 *
 * @example
 * ```ts
 * const options: RMSPropOptions = { ...DEFAULT_OPTIONS, lr: 1e-3, alpha: 0.9, momentum: 0.9, centered: true };
 * const partial: Partial<RMSPropOptions> = { lr: 1e-3, centered: true }; // what referenceStep takes
 * ```
 */
export interface RMSPropOptions {
  /** Learning rate, >= 0. PyTorch `lr` (default 0.01). */
  lr: number;
  /** Decay of the mean square, in [0, 1]. PyTorch `alpha`, Keras `rho`, TF/TF.js/Optax `decay`. */
  alpha: number;
  /** Added to the denominator for stability: at least 2^-126, f32's smallest normal (a GPU may flush less to 0). */
  eps: number;
  /** `'outside'`: `sqrt(v) + eps` (PyTorch); `'inside'`: `sqrt(v + eps)` (Keras, TF1, TF.js, Optax). */
  epsMode: EpsMode;
  /** Momentum factor, >= 0; 0 turns momentum off and allocates no momentum buffer. */
  momentum: number;
  /** Momentum form: `false` keeps lr outside the buffer (PyTorch), `true` puts it inside (TF, Keras, Optax). */
  lrInMomentum: boolean;
  /** Centered RMSProp: normalize by the variance `v - m*m` (clamped at 0) instead of `v`. */
  centered: boolean;
  /** L2 penalty added to the gradient (`g += weightDecay * p`), as PyTorch, >= 0. */
  weightDecay: number;
  /** Maximize the objective instead of minimizing it (PyTorch `maximize`). */
  maximize: boolean;
  /** Initial value of the mean square `v`, >= 0 (TF1 starts it at 1). */
  initialScale: number;
  /**
   * Nesterov momentum (needs momentum > 0): the step uses `g/den + momentum * b` after updating `b`
   * (Optax `rmsprop(nesterov=True)`; with lrInMomentum, `lr*g/den + momentum * b`).
   */
  nesterov: boolean;
  /** `'l2'` (PyTorch: `g += weightDecay * p`) or `'decoupled'` (AdamW, Keras 3: `p *= 1 - lr * weightDecay` first). */
  weightDecayMode: WeightDecayMode;
  /**
   * Optax `rmsprop(bias_correction=True)`: divide `v` (and `m` when centered) by `1 - alpha^t`, t the
   * 1-based step, before the root. Not with skipNonFinite (the host must know the step count).
   * The factor changes at every step, so each step takes a new slot of the step-values ring
   * (src/gpu/step-values.ts): steps recorded into many encoders before a submit each keep their own.
   * With `centered`, the first steps' variance v̂ - m̂² is a difference of nearly equal numbers (0 at
   * step 1 from a zero state) unless initialScale dominates g², as in Optax.
   */
  biasCorrection: boolean;
  /**
   * Optimizer-wide (not per group): if any gradient element of a step is NaN or ±Inf, skip the whole
   * step on the GPU (parameters and state unchanged) and count it (`skippedSteps()`). As Optax
   * `apply_if_finite`, PyTorch AMP's `GradScaler` skipping `optimizer.step()`.
   */
  skipNonFinite: boolean;
  /**
   * Optimizer-wide (not per group): when > 0, scale every gradient by
   * `min(1, clipGradNorm / (norm + 1e-6))`, `norm` the global L2 norm over all tensors, as
   * `torch.nn.utils.clip_grad_norm_` before the step. 0 turns it off.
   */
  clipGradNorm: number;
  /**
   * The gradient buffers' element type: `'f32'`, or `'f16'` / `'bf16'` (2 bytes each, two per u32,
   * any count; the buffer must reach the end of a tensor's last u32) from a 16-bit backward pass;
   * decoded exactly to f32. The state stays f32; the parameters are f32 unless `paramDtype` says otherwise.
   */
  gradDtype: GradDtype;
  /**
   * Optimizer-wide: the loss scale the gradients carry; they are multiplied by `1 / lossScale`
   * (rounded once to f32) before anything else, and the non-finite check and the norm see the
   * unscaled values, as PyTorch AMP's `GradScaler.unscale_`. 1: none.
   */
  lossScale: number;
  /**
   * The parameter buffers' element type: `'f32'`, or `'f16'` / `'bf16'` (2 bytes each, two per u32,
   * any count; the buffer must reach the end of a tensor's last u32). The update computes in f32 and
   * writes each parameter back rounded to nearest even (f16: overflow to ±Infinity, subnormals kept;
   * NaN stays NaN). The state stays f32.
   */
  paramDtype: ParamDtype;
  /**
   * With a 16-bit `paramDtype`: keep an f32 master copy of the parameters (in the optimizer's state,
   * copied from the caller's buffer when the optimizer is made, saved in the state dict as `master`),
   * update it, and write its rounded value to the caller's buffer, as PyTorch AMP / apex O2 do, so that
   * updates smaller than half a 16-bit ULP are not lost. `false`: update the 16-bit values themselves.
   * No effect with `paramDtype: 'f32'`.
   */
  masterWeights: boolean;
  /**
   * How the state is stored: `'f32'`, or `'int8-blockwise'` (bitsandbytes' 8-bit blockwise format,
   * {@link StateDtype}): the mean square of every tensor of 4096 elements or more as uint8 codes with
   * one f32 absmax per 256 elements, dequantized, updated and requantized in the same fused pass.
   * Supports every option except `centered`, `momentum` > 0 and 16-bit `gradDtype` / `paramDtype`.
   */
  stateDtype: StateDtype;
}

/**
 * What the optimizers' constructors and param groups take: options, where `lr` may also be a
 * schedule `(step) => lr` (see `schedules`).
 *
 * @example
 * ```ts
 * const config: RMSPropConfig = { lr: schedules.linearWarmup(1e-3, 100), momentum: 0.9 };
 * ```
 */
export type RMSPropConfig = Partial<Omit<RMSPropOptions, 'lr'>> & {
  /**
   * The learning rate (a finite number >= 0; default 0.01), or a schedule `(step) => lr` called
   * before each step with the 0-based step count, whose value is checked the same way.
   */
  lr?: number | LrSchedule;
};

/**
 * Options with every field present, as the optimizer holds them: what {@link resolveOptions}
 * returns and `groupOptions` lists, and what a state dict saves for each group.
 *
 * @example
 * ```ts
 * const resolved: ResolvedOptions = resolveOptions({ lr: 1e-3 });
 * resolved.alpha; // 0.99, PyTorch's default
 * optimizer.groupOptions[0]!.lr; // the first group's current learning rate
 * ```
 */
export type ResolvedOptions = Readonly<RMSPropOptions>;

/**
 * PyTorch's defaults for `torch.optim.RMSprop`.
 *
 * @example
 * ```ts
 * DEFAULT_OPTIONS.lr; // 0.01
 * ```
 */
export const DEFAULT_OPTIONS: ResolvedOptions = Object.freeze({
  lr: 0.01,
  alpha: 0.99,
  eps: 1e-8,
  epsMode: 'outside',
  momentum: 0,
  lrInMomentum: false,
  centered: false,
  weightDecay: 0,
  maximize: false,
  initialScale: 0,
  nesterov: false,
  weightDecayMode: 'l2',
  biasCorrection: false,
  skipNonFinite: false,
  clipGradNorm: 0,
  gradDtype: 'f32',
  lossScale: 1,
  paramDtype: 'f32',
  masterWeights: true,
  stateDtype: 'f32',
});

/**
 * Options that hold for the whole optimizer (its one reduction over every gradient): set them in the
 * optimizer's options; a param group may not set them.
 */
export const GLOBAL_OPTION_NAMES: readonly (keyof RMSPropOptions)[] = Object.freeze([
  'skipNonFinite',
  'clipGradNorm',
  'lossScale',
]);

/** The option names, in a stable order (used for state dicts and error messages). */
export const OPTION_NAMES = Object.keys(DEFAULT_OPTIONS) as (keyof RMSPropOptions)[];

/**
 * Each framework's defaults and conventions, as options for this library.
 * TF1, TF.js and Optax take no default learning rate: their presets use Keras's 1e-3.
 * Spread one and override what you need.
 *
 * @example
 * ```ts
 * const opt = new RMSProp(device, params, { ...presets.keras, lr: 3e-4, momentum: 0.9 });
 * ```
 */
export const presets = Object.freeze({
  /** `torch.optim.RMSprop` defaults: eps outside the root, lr outside the momentum buffer. */
  pytorch: Object.freeze({ ...DEFAULT_OPTIONS }) as ResolvedOptions,
  /**
   * Keras 3 `keras.optimizers.RMSprop`: rho 0.9, eps 1e-7 inside the root, lr inside the momentum
   * buffer, weight decay decoupled (Keras rounds `p - p*wd*lr`, this library `p * (1 - lr*wd)`).
   */
  keras: Object.freeze({
    ...DEFAULT_OPTIONS,
    lr: 1e-3,
    alpha: 0.9,
    eps: 1e-7,
    epsMode: 'inside',
    lrInMomentum: true,
    weightDecayMode: 'decoupled',
  }) as ResolvedOptions,
  /** TF1 `tf.compat.v1.train.RMSPropOptimizer`: decay 0.9, eps 1e-10 inside, mean square starting at 1. */
  tf1: Object.freeze({
    ...DEFAULT_OPTIONS,
    lr: 1e-3,
    alpha: 0.9,
    eps: 1e-10,
    epsMode: 'inside',
    lrInMomentum: true,
    initialScale: 1,
  }) as ResolvedOptions,
  /**
   * TF.js `tf.train.rmsprop`: decay 0.9, eps 1e-7 inside, lr inside the momentum buffer.
   * TF.js 4.22's centered form subtracts eps inside the root (a bug); this library adds it.
   */
  tfjs: Object.freeze({
    ...DEFAULT_OPTIONS,
    lr: 1e-3,
    alpha: 0.9,
    eps: 1e-7,
    epsMode: 'inside',
    lrInMomentum: true,
  }) as ResolvedOptions,
  /** Optax `optax.rmsprop`: decay 0.9, eps 1e-8 inside the root (`eps_in_sqrt`), lr inside the momentum trace. */
  optax: Object.freeze({
    ...DEFAULT_OPTIONS,
    lr: 1e-3,
    alpha: 0.9,
    eps: 1e-8,
    epsMode: 'inside',
    lrInMomentum: true,
  }) as ResolvedOptions,
});

/** Other frameworks' names for this library's options, to turn a likely mistake into a helpful error. */
const FOREIGN_NAMES: Record<string, keyof RMSPropOptions> = {
  learningRate: 'lr',
  learning_rate: 'lr',
  rho: 'alpha',
  decay: 'alpha',
  epsilon: 'eps',
  weight_decay: 'weightDecay',
  initial_scale: 'initialScale',
  eps_in_sqrt: 'epsMode',
  bias_correction: 'biasCorrection',
  max_norm: 'clipGradNorm',
  clipnorm: 'clipGradNorm',
  global_clipnorm: 'clipGradNorm',
};

/**
 * Checks one learning rate: finite and >= 0. Throws a RangeError naming `where` otherwise.
 *
 * @example
 * ```ts
 * validateLr(0.01, 'options.lr'); // returns 0.01
 * ```
 */
export function validateLr(lr: unknown, where = 'lr'): number {
  if (typeof lr !== 'number') throw new TypeError(`${where} must be a number, got ${describe(lr)}.`);
  if (!Number.isFinite(lr) || lr < 0) {
    throw new RangeError(`${where} must be a finite number >= 0, got ${lr}. Pass a learning rate such as 0.01.`);
  }
  return lr;
}

/**
 * Merges `options` over `base` (PyTorch's defaults unless given) and checks every field.
 * Throws a TypeError for an unknown option or a value of the wrong type, a RangeError for a value
 * out of range; the message names the option and what to pass instead.
 *
 * @example
 * ```ts
 * const o = resolveOptions({ lr: 1e-3, centered: true }); // every field filled in
 * resolveOptions({ alpha: 1.5 }); // RangeError: options.alpha must be in [0, 1] ...
 * ```
 */
export function resolveOptions(
  options: Partial<RMSPropOptions> | undefined,
  base: ResolvedOptions = DEFAULT_OPTIONS,
  where = 'options',
): ResolvedOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new TypeError(`${where} must be an object of RMSProp options, got ${describe(options)}.`);
  }
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(options ?? {})) {
    if (value === undefined) continue;
    if (!Object.hasOwn(DEFAULT_OPTIONS, key)) { // not `in`: 'toString' and 'constructor' are no options
      const hint = Object.hasOwn(FOREIGN_NAMES, key) ? FOREIGN_NAMES[key] : undefined;
      throw new TypeError(
        `${where}.${key} is not an RMSProp option` +
          (hint
            ? `: this library calls it '${hint}' (names follow PyTorch; see presets for other frameworks).`
            : `. Known options: ${OPTION_NAMES.join(', ')}.`),
      );
    }
    merged[key] = value;
  }
  const o = merged as unknown as RMSPropOptions;
  validateLr(o.lr, `${where}.lr`);
  number(o.alpha, `${where}.alpha`, (x) => x >= 0 && x <= 1, 'in [0, 1], such as 0.99');
  number(o.eps, `${where}.eps`, (x) => x > 0, '> 0, such as 1e-8');
  // Below f32's smallest normal, a GPU that flushes subnormals to zero (WGSL allows it) sees eps = 0:
  // then sqrt(0) + 0 = 0, and a zero gradient (an arena's zero padding too) gives 0 / 0 = NaN.
  if (Math.fround(o.eps) < 2 ** -126) {
    throw new RangeError(
      `${where}.eps must be at least 2^-126 (1.1754944e-38), the smallest normal f32; got ${o.eps}. ` +
      'A GPU may flush smaller values to 0 (WGSL allows it), and then a zero gradient divides 0 by 0 and gives NaN. ' +
      'Use 1e-8 or such.',
    );
  }
  number(o.momentum, `${where}.momentum`, (x) => x >= 0, '>= 0 (0 turns momentum off)');
  number(o.weightDecay, `${where}.weightDecay`, (x) => x >= 0, '>= 0 (0 turns weight decay off)');
  number(o.initialScale, `${where}.initialScale`, (x) => x >= 0, '>= 0 (0 unless a preset says 1)');
  if (o.epsMode !== 'outside' && o.epsMode !== 'inside') {
    throw new TypeError(
      `${where}.epsMode must be 'outside' (PyTorch) or 'inside' (Keras, TF, Optax), got ${describe(o.epsMode)}.`,
    );
  }
  for (const key of ['lrInMomentum', 'centered', 'maximize', 'nesterov', 'biasCorrection', 'skipNonFinite'] as const) {
    if (typeof o[key] !== 'boolean') {
      throw new TypeError(`${where}.${key} must be true or false, got ${describe(o[key])}.`);
    }
  }
  if (o.weightDecayMode !== 'l2' && o.weightDecayMode !== 'decoupled') {
    throw new TypeError(
      `${where}.weightDecayMode must be 'l2' (PyTorch RMSprop) or 'decoupled' (AdamW, Keras 3), ` +
      `got ${describe(o.weightDecayMode)}.`,
    );
  }
  // A positive maxNorm below f32's smallest normal could flush to 0 on a GPU and turn clipping off there only.
  number(
    o.clipGradNorm,
    `${where}.clipGradNorm`,
    (x) => x === 0 || x >= 2 ** -126,
    '0 (off) or a maximum gradient norm >= 2^-126, such as 1',
  );
  if (o.gradDtype !== 'f32' && o.gradDtype !== 'f16' && o.gradDtype !== 'bf16') {
    throw new TypeError(`${where}.gradDtype must be 'f32', 'f16' or 'bf16', got ${describe(o.gradDtype)}.`);
  }
  if (o.paramDtype !== 'f32' && o.paramDtype !== 'f16' && o.paramDtype !== 'bf16') {
    throw new TypeError(`${where}.paramDtype must be 'f32', 'f16' or 'bf16', got ${describe(o.paramDtype)}.`);
  }
  if (typeof o.masterWeights !== 'boolean') {
    throw new TypeError(`${where}.masterWeights must be true or false, got ${describe(o.masterWeights)}.`);
  }
  number(
    o.lossScale,
    `${where}.lossScale`,
    (x) => x >= 2 ** -126 && x <= 2 ** 126,
    'a loss scale in [2^-126, 2^126], such as 65536 (1: none)',
  );
  if (o.stateDtype !== 'f32' && o.stateDtype !== 'int8-blockwise') {
    throw new TypeError(`${where}.stateDtype must be 'f32' or 'int8-blockwise', got ${describe(o.stateDtype)}.`);
  }
  if (o.stateDtype === 'int8-blockwise') {
    // bitsandbytes refuses centered and ignores momentum in 8 bits; 8-bit m and b buffers are not built here.
    const refused = o.centered ? 'centered' : o.momentum > 0 ? 'momentum > 0'
      : o.gradDtype !== 'f32' ? `gradDtype '${o.gradDtype}'` : o.paramDtype !== 'f32' ? `paramDtype '${o.paramDtype}'`
      : undefined;
    if (refused !== undefined) {
      throw new RangeError(
        `${where}.stateDtype 'int8-blockwise' does not support ${refused} (8-bit state holds the mean square ` +
        'alone, for f32 parameters and gradients): use stateDtype \'f32\' for this group, or drop that option.',
      );
    }
  }
  if (o.nesterov && o.momentum === 0) {
    throw new RangeError(`${where}.nesterov needs momentum > 0: set momentum (such as 0.9) or leave nesterov false.`);
  }
  if (o.biasCorrection && Math.fround(o.alpha) === 1) {
    throw new RangeError(`${where}.biasCorrection needs alpha < 1 in f32: with alpha ${o.alpha} ` +
      `(${Math.fround(o.alpha)} in f32) the correction 1 - alpha^t is 0. Lower alpha or leave biasCorrection false.`);
  }
  if (o.biasCorrection && o.skipNonFinite) {
    throw new RangeError(
      `${where}.biasCorrection cannot be combined with skipNonFinite: the correction 1 - alpha^t needs the count ` +
      'of applied steps on the host, which skipping on the GPU hides. Turn one off.',
    );
  }
  return Object.freeze(o);
}

function number(value: unknown, where: string, ok: (x: number) => boolean, expected: string): void {
  if (typeof value !== 'number') throw new TypeError(`${where} must be a number ${expected}, got ${describe(value)}.`);
  if (!Number.isFinite(value) || !ok(value)) throw new RangeError(`${where} must be ${expected}; got ${value}.`);
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return value.constructor?.name ? `a ${value.constructor.name}` : 'an object';
  return String(value);
}
