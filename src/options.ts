/**
 * Options of the RMSProp update rule: their types, PyTorch's defaults, the framework presets,
 * and validation. Names follow PyTorch's `torch.optim.RMSprop`; see the options table in the README
 * for Keras, TF1, TF.js and Optax names.
 */

/** Where `eps` enters the denominator: `sqrt(v) + eps` (PyTorch) or `sqrt(v + eps)` (Keras, TF, Optax). */
export type EpsMode = 'outside' | 'inside';

/**
 * Hyperparameters of one RMSProp step. Every field is optional where an options object is taken;
 * missing fields take PyTorch's defaults ({@link DEFAULT_OPTIONS}).
 *
 * @example
 * ```ts
 * const options: RMSPropOptions = { lr: 1e-3, alpha: 0.9, momentum: 0.9, centered: true };
 * ```
 */
export interface RMSPropOptions {
  /** Learning rate, >= 0. PyTorch `lr` (default 0.01). */
  lr: number;
  /** Decay of the mean square, in [0, 1]. PyTorch `alpha`, Keras `rho`, TF/TF.js/Optax `decay`. */
  alpha: number;
  /** Added to the denominator for stability, > 0. */
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
}

/** Options with every field present, as the optimizer holds them. */
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
});

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
  /** Keras 3 `keras.optimizers.RMSprop`: rho 0.9, eps 1e-7 inside the root, lr inside the momentum buffer. */
  keras: Object.freeze({ ...DEFAULT_OPTIONS, lr: 1e-3, alpha: 0.9, eps: 1e-7, epsMode: 'inside', lrInMomentum: true }) as ResolvedOptions,
  /** TF1 `tf.compat.v1.train.RMSPropOptimizer`: decay 0.9, eps 1e-10 inside, mean square starting at 1. */
  tf1: Object.freeze({ ...DEFAULT_OPTIONS, lr: 1e-3, alpha: 0.9, eps: 1e-10, epsMode: 'inside', lrInMomentum: true, initialScale: 1 }) as ResolvedOptions,
  /**
   * TF.js `tf.train.rmsprop`: decay 0.9, eps 1e-7 inside, lr inside the momentum buffer.
   * TF.js 4.22's centered form subtracts eps inside the root (a bug); this library adds it.
   */
  tfjs: Object.freeze({ ...DEFAULT_OPTIONS, lr: 1e-3, alpha: 0.9, eps: 1e-7, epsMode: 'inside', lrInMomentum: true }) as ResolvedOptions,
  /** Optax `optax.rmsprop`: decay 0.9, eps 1e-8 inside the root (`eps_in_sqrt`), lr inside the momentum trace. */
  optax: Object.freeze({ ...DEFAULT_OPTIONS, lr: 1e-3, alpha: 0.9, eps: 1e-8, epsMode: 'inside', lrInMomentum: true }) as ResolvedOptions,
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
    if (!(key in DEFAULT_OPTIONS)) {
      const hint = FOREIGN_NAMES[key];
      throw new TypeError(
        `${where}.${key} is not an RMSProp option` +
          (hint ? `: this library calls it '${hint}' (names follow PyTorch; see presets for other frameworks).` : `. Known options: ${OPTION_NAMES.join(', ')}.`),
      );
    }
    merged[key] = value;
  }
  const o = merged as unknown as RMSPropOptions;
  validateLr(o.lr, `${where}.lr`);
  number(o.alpha, `${where}.alpha`, (x) => x >= 0 && x <= 1, 'in [0, 1], such as 0.99');
  number(o.eps, `${where}.eps`, (x) => x > 0, '> 0, such as 1e-8');
  number(o.momentum, `${where}.momentum`, (x) => x >= 0, '>= 0 (0 turns momentum off)');
  number(o.weightDecay, `${where}.weightDecay`, (x) => x >= 0, '>= 0 (0 turns weight decay off)');
  number(o.initialScale, `${where}.initialScale`, (x) => x >= 0, '>= 0 (0 unless a preset says 1)');
  if (o.epsMode !== 'outside' && o.epsMode !== 'inside') {
    throw new TypeError(`${where}.epsMode must be 'outside' (PyTorch) or 'inside' (Keras, TF, Optax), got ${describe(o.epsMode)}.`);
  }
  for (const key of ['lrInMomentum', 'centered', 'maximize'] as const) {
    if (typeof o[key] !== 'boolean') throw new TypeError(`${where}.${key} must be true or false, got ${describe(o[key])}.`);
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
