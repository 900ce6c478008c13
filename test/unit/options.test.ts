/** Options: PyTorch's defaults, the framework presets (DESIGN.md's table) and every validation error. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, OPTION_NAMES, presets, resolveOptions, validateLr, type RMSPropOptions } from '../../src/rule/options.js';

describe('defaults', () => {
  it("are torch.optim.RMSprop's", () => {
    // torch.optim.RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, maximize=False)
    expect(DEFAULT_OPTIONS).toEqual({
      lr: 0.01, alpha: 0.99, eps: 1e-8, epsMode: 'outside', momentum: 0, lrInMomentum: false,
      centered: false, weightDecay: 0, maximize: false, initialScale: 0,
      // Off unless asked for: the extensions (Optax's nesterov and bias_correction, AdamW's decay, the pre-pass).
      nesterov: false, weightDecayMode: 'l2', biasCorrection: false, skipNonFinite: false, clipGradNorm: 0,
      gradDtype: 'f32', lossScale: 1, paramDtype: 'f32', masterWeights: true, stateDtype: 'f32',
    });
    expect(Object.isFrozen(DEFAULT_OPTIONS)).toBe(true);
    expect(OPTION_NAMES).toEqual(Object.keys(DEFAULT_OPTIONS));
  });

  it('fill every missing field, and undefined counts as missing', () => {
    expect(resolveOptions(undefined)).toEqual(DEFAULT_OPTIONS);
    expect(resolveOptions({})).toEqual(DEFAULT_OPTIONS);
    expect(resolveOptions({ lr: undefined, centered: true })).toEqual({ ...DEFAULT_OPTIONS, centered: true });
    expect(Object.isFrozen(resolveOptions({ lr: 1 }))).toBe(true);
  });

  it('merge over a given base (as param groups over the optimizer options)', () => {
    const base = resolveOptions({ lr: 0.5, momentum: 0.9 });
    expect(resolveOptions({ centered: true }, base)).toEqual({ ...DEFAULT_OPTIONS, lr: 0.5, momentum: 0.9, centered: true });
  });
});

describe('presets (DESIGN.md table)', () => {
  const table: Record<keyof typeof presets, Partial<RMSPropOptions>> = {
    pytorch: { lr: 1e-2, alpha: 0.99, eps: 1e-8, epsMode: 'outside', lrInMomentum: false, initialScale: 0 },
    keras: { lr: 1e-3, alpha: 0.9, eps: 1e-7, epsMode: 'inside', lrInMomentum: true, initialScale: 0 },
    tf1: { lr: 1e-3, alpha: 0.9, eps: 1e-10, epsMode: 'inside', lrInMomentum: true, initialScale: 1 },
    tfjs: { lr: 1e-3, alpha: 0.9, eps: 1e-7, epsMode: 'inside', lrInMomentum: true, initialScale: 0 },
    optax: { lr: 1e-3, alpha: 0.9, eps: 1e-8, epsMode: 'inside', lrInMomentum: true, initialScale: 0 },
  };

  it.each(Object.keys(table) as (keyof typeof presets)[])('%s', (name) => {
    const preset = presets[name];
    expect(preset).toMatchObject(table[name]);
    // No framework's defaults turn on momentum, centering, weight decay or maximize.
    expect(preset).toMatchObject({ momentum: 0, centered: false, weightDecay: 0, maximize: false });
    expect(Object.keys(preset).sort()).toEqual([...OPTION_NAMES].sort());
    expect(Object.isFrozen(preset)).toBe(true);
    expect(resolveOptions(preset)).toEqual(preset); // valid as they stand
  });

  it('pytorch is the defaults', () => {
    expect(presets.pytorch).toEqual(DEFAULT_OPTIONS);
    expect(Object.keys(presets).sort()).toEqual(['keras', 'optax', 'pytorch', 'tf1', 'tfjs']);
  });
});

describe('validation', () => {
  /** Expects `resolveOptions(options)` to throw `type` with a message naming `name`. */
  const rejects = (options: unknown, type: typeof TypeError | typeof RangeError, name: string) => {
    let caught: unknown;
    try {
      resolveOptions(options as Partial<RMSPropOptions>);
    } catch (e) {
      caught = e;
    }
    expect(caught, `${String(Object.keys(options as object))} = ${String(Object.values(options as object))} should throw`).toBeInstanceOf(type);
    // RangeError is not a TypeError nor the reverse: the class itself tells them apart.
    expect((caught as Error).constructor).toBe(type);
    expect((caught as Error).message).toContain(`options.${name}`);
    return (caught as Error).message;
  };

  const numeric = ['lr', 'alpha', 'eps', 'momentum', 'weightDecay', 'initialScale'] as const;

  it.each(numeric)('%s: NaN, ±Infinity are RangeErrors; strings, null, booleans, bigints TypeErrors', (name) => {
    for (const bad of [NaN, Infinity, -Infinity]) rejects({ [name]: bad }, RangeError, name);
    for (const bad of ['0.1', null, true, 1n, {}]) rejects({ [name]: bad }, TypeError, name);
  });

  it.each([
    ['lr', -1e-9], ['alpha', -0.01], ['alpha', 1.0000001], ['eps', 0], ['eps', -1e-8],
    ['momentum', -0.1], ['weightDecay', -1e-4], ['initialScale', -1],
  ] as const)('%s = %s is a RangeError', (name, value) => {
    rejects({ [name]: value }, RangeError, name);
  });

  it('accepts the edges: lr 0, alpha 0 and 1, momentum/weightDecay/initialScale 0, eps down to 2^-126', () => {
    expect(resolveOptions({ lr: 0, alpha: 0 })).toMatchObject({ lr: 0, alpha: 0 });
    expect(resolveOptions({ alpha: 1 }).alpha).toBe(1);
    expect(resolveOptions({ eps: 2 ** -126 }).eps).toBe(2 ** -126);
    expect(resolveOptions({ eps: 1.1754944e-38 }).eps).toBe(1.1754944e-38); // rounds to 2^-126 in f32
    expect(resolveOptions({ momentum: 0, weightDecay: 0, initialScale: 0 })).toEqual(DEFAULT_OPTIONS);
  });

  it('eps below the smallest normal f32 (2^-126) is a RangeError that says why: a GPU may flush it to 0, and 0 / 0 is NaN', () => {
    for (const tiny of [Number.MIN_VALUE, 1e-40, 2 ** -127, 1e-38]) {
      const message = rejects({ eps: tiny }, RangeError, 'eps');
      expect(message).toMatch(/at least 2\^-126/);
      expect(message).toMatch(/flush/);
      expect(message).toMatch(/0 by 0 and gives NaN/);
    }
    // Where it is checked, the same: a param group's eps too.
    expect(() => resolveOptions({ eps: 1e-40 }, undefined, 'params[1]')).toThrow(/params\[1\]\.eps must be at least 2\^-126/);
  });

  it('epsMode must be outside or inside (TypeError)', () => {
    for (const bad of ['Outside', 'sqrt', '', true, null, 1]) rejects({ epsMode: bad }, TypeError, 'epsMode');
    expect(resolveOptions({ epsMode: 'inside' }).epsMode).toBe('inside');
  });

  it.each(['lrInMomentum', 'centered', 'maximize'] as const)('%s must be a boolean (TypeError)', (name) => {
    for (const bad of [1, 0, 'true', null]) {
      expect(rejects({ [name]: bad }, TypeError, name)).toContain('true or false');
    }
  });

  it.each([
    ['learningRate', 'lr'], ['learning_rate', 'lr'], ['rho', 'alpha'], ['decay', 'alpha'],
    ['epsilon', 'eps'], ['weight_decay', 'weightDecay'], ['initial_scale', 'initialScale'], ['eps_in_sqrt', 'epsMode'],
  ])("unknown %s names this library's '%s'", (foreign, ours) => {
    const message = rejects({ [foreign]: 1 }, TypeError, foreign);
    expect(message).toContain(`this library calls it '${ours}'`);
  });

  it.each(['toString', 'constructor', 'hasOwnProperty', 'valueOf'])('%s (a key of Object.prototype) is no option', (key) => {
    const message = rejects({ [key]: 1 }, TypeError, key);
    expect(message).toContain('Known options: lr,');
  });

  it('an unknown key without a known equivalent lists the options', () => {
    const message = rejects({ amsgrad: true }, TypeError, 'amsgrad');
    for (const name of OPTION_NAMES) expect(message).toContain(name);
  });

  it('options must be an object', () => {
    for (const bad of [null, 0.01, 'fast', [0.01]]) expect(() => resolveOptions(bad as never)).toThrow(TypeError);
  });

  it('names the place given (param groups pass their own)', () => {
    expect(() => resolveOptions({ lr: -1 }, DEFAULT_OPTIONS, 'params[2]')).toThrow(/params\[2\]\.lr/);
  });

  it('validateLr: number, finite, >= 0', () => {
    expect(validateLr(0)).toBe(0);
    expect(validateLr(3e-4)).toBe(3e-4);
    expect(() => validateLr(-1)).toThrow(RangeError);
    expect(() => validateLr(NaN, 'optimizer.lr')).toThrow(/optimizer\.lr/);
    expect(() => validateLr(Infinity)).toThrow(RangeError);
    expect(() => validateLr('0.1')).toThrow(TypeError);
  });
});
