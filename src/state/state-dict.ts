/**
 * The optimizer's state as plain data, the same for the GPU optimizer and its CPU twin: save it
 * from one, load it into the other. Loading checks everything before anything changes.
 */
import { DEFAULT_OPTIONS, describe, OPTION_NAMES, type ResolvedOptions } from '../rule/options.js';
import type { ReferenceState } from '../rule/reference.js';
import {
  blocksOf, dequantizeBlockwise, quantizeBlockwise, usesBlockwise8, BLOCK_SIZE, ZERO_CODE,
} from '../rule/blockwise8.js';
import type { StateDtype } from '../rule/options.js';

/**
 * One tensor's optimizer state, with the name of its parameter: an entry of {@link RMSPropState}'s `tensors`.
 *
 * @example
 * ```ts
 * const { tensors } = await optimizer.stateDict();
 * for (const t of tensors) console.log(t.name, t.size, t.squareAvg[0], t.momentumBuffer?.[0]);
 * ```
 */
export interface TensorState extends ReferenceState {
  /** The parameter's name (its spec's `name`, else `param{index}`); loading checks it matches. */
  readonly name: string;
  /** The f32 master copy of 16-bit parameters (paramDtype 'f16' / 'bf16' with masterWeights). */
  readonly master?: Float32Array;
  /**
   * 8-bit state (stateDtype 'int8-blockwise', tensors of 4096 elements or more): the mean square's
   * codes, one per element, indices into `DYNAMIC_MAP`. `squareAvg` then holds their values
   * (`DYNAMIC_MAP[code] * absmax`, for reading); loading takes the codes and absmax, and checks that
   * `squareAvg` is still their value (to load other f32 values, convert with {@link convertStateDict}).
   */
  readonly codes?: Uint8Array;
  /** 8-bit state: one scale per block of 256 elements. */
  readonly absmax?: Float32Array;
}

/**
 * Everything needed to resume training bit for bit: the step count, each group's options (with
 * its learning rate at the time), and each tensor's state in the order the parameters were given.
 *
 * @example
 * ```ts
 * const saved = await optimizer.stateDict();
 * // ... later, on a new optimizer over the same parameters and options:
 * optimizer.loadStateDict(saved);
 * ```
 */
export interface RMSPropState {
  /** Steps taken: the optimizer's `stepCount`, skipped steps (`skipNonFinite`) included. */
  readonly step: number;
  /** One entry per param group, in order. */
  readonly groups: readonly {
    /** The group's options, `lr` being its learning rate when saved (with a schedule, the last step's value). */
    readonly options: ResolvedOptions;
    /** The numbers of the group's parameters: indices into `tensors`. */
    readonly params: readonly number[];
  }[];
  /** One entry per parameter, in the order the parameters were given (across groups). */
  readonly tensors: readonly TensorState[];
  /** Steps skipped by `skipNonFinite` so far (present only with that option). */
  readonly skippedSteps?: number;
}

/** What an optimizer is, to check a state against. */
export interface StateShape {
  readonly groups: readonly {
    readonly options: ResolvedOptions;
    readonly params: readonly { name: string; size: number; index: number }[];
  }[];
}

/**
 * Throws a TypeError or RangeError unless `state` fits `shape`: the same groups, parameters (names
 * and sizes), and options except `lr`, which the state restores. Returns the state's learning
 * rate for each group. `where` starts each message.
 */
export function checkStateDict(state: unknown, shape: StateShape, where = 'loadStateDict(state)'): number[] {
  if (typeof state !== 'object' || state === null) {
    throw new TypeError(`${where}: state must be what stateDict() returned, got ${describe(state)}.`);
  }
  const s = state as RMSPropState;
  if (!Number.isSafeInteger(s.step) || s.step < 0) {
    throw new TypeError(`${where}: state.step must be an integer >= 0, got ${describe(s.step)}.`);
  }
  if (s.skippedSteps !== undefined && (!Number.isSafeInteger(s.skippedSteps) || s.skippedSteps < 0 ||
    s.skippedSteps > 0xffffffff || s.skippedSteps > s.step)) {
    throw new TypeError(
      `${where}: state.skippedSteps must be an integer in [0, state.step], got ${describe(s.skippedSteps)}.`,
    );
  }
  if (!Array.isArray(s.groups) || !Array.isArray(s.tensors)) {
    throw new TypeError(`${where}: state needs 'groups' and 'tensors' arrays, as stateDict() returns.`);
  }
  if (s.groups.length !== shape.groups.length) {
    throw new RangeError(`${where}: state has ${s.groups.length} param groups, this optimizer ${shape.groups.length}.`);
  }
  const expected = shape.groups.flatMap((g) => g.params);
  if (s.tensors.length !== expected.length) {
    throw new RangeError(
      `${where}: state holds ${s.tensors.length} tensors, this optimizer has ${expected.length} parameters.`,
    );
  }
  const lrs = shape.groups.map((group, g) => {
    const saved = s.groups[g]!;
    const ids = group.params.map((p) => p.index);
    if (!Array.isArray(saved.params) || saved.params.length !== ids.length ||
      saved.params.some((x, i) => x !== ids[i])) {
      throw new RangeError(`${where}: group ${g} holds parameters [${saved.params}] in the state but [${ids}] here.`);
    }
    for (const key of OPTION_NAMES) {
      if (key === 'lr') continue;
      // An option the state does not name (saved before the option existed) had its default.
      const value = typeof saved.options === 'object' && saved.options !== null && !(key in saved.options)
        ? DEFAULT_OPTIONS[key]
        : saved.options?.[key];
      if (value !== group.options[key]) {
        throw new RangeError(
          `${where}: the state was saved with ${key} = ${describe(saved.options?.[key])} in group ${g}, ` +
          `but this optimizer has ${describe(group.options[key])}: ` + (key === 'stateDtype'
            ? `convert the state with convertStateDict(state, ${describe(group.options[key])}).`
            : 'create it with the same options.'),
        );
      }
    }
    if (typeof saved.options.lr !== 'number' || !Number.isFinite(saved.options.lr) || saved.options.lr < 0) {
      throw new RangeError(
        `${where}: group ${g}'s saved lr is ${describe(saved.options.lr)}, not a finite number >= 0.`,
      );
    }
    return saved.options.lr;
  });
  shape.groups.forEach((group) => group.params.forEach((p) => {
    const t = s.tensors[p.index]!;
    const at = `${where}: tensor ${p.index} ('${p.name}')`;
    if (t?.name !== p.name) {
      throw new RangeError(
        `${at} is named '${t?.name}' in the state: parameters must be given in the same order, with the same names.`,
      );
    }
    if (t.size !== p.size) throw new RangeError(`${at} has ${t.size} elements in the state but ${p.size} here.`);
    const o = group.options;
    slot(t.squareAvg, 'squareAvg', true, p.size, at);
    slot(t.gradAvg, 'gradAvg', o.centered, p.size, at);
    slot(t.momentumBuffer, 'momentumBuffer', o.momentum > 0, p.size, at);
    slot(t.master, 'master', o.paramDtype !== 'f32' && o.masterWeights, p.size, at);
    checkQuantized(t, usesBlockwise8(o, p.size), p.size, at);
  }));
  return lrs;
}

/** A tensor's 8-bit state: present exactly when its options and size call for it, and consistent. */
function checkQuantized(t: TensorState, wanted: boolean, size: number, at: string): void {
  if (!wanted) {
    if (t.codes !== undefined || t.absmax !== undefined) {
      throw new RangeError(
        `${at} has 8-bit state (codes, absmax) but this optimizer keeps it in f32: ` +
        'create it with the same stateDtype, or convert the state with convertStateDict(state, \'f32\').',
      );
    }
    return;
  }
  if (!(t.codes instanceof Uint8Array) || !(t.absmax instanceof Float32Array)) {
    throw new TypeError(
      `${at}: this optimizer keeps 8-bit state (stateDtype 'int8-blockwise'), and the state has no codes ` +
      '(a Uint8Array) and absmax (a Float32Array): ' +
      'convert an f32 state with convertStateDict(state, \'int8-blockwise\').',
    );
  }
  if (t.codes.length !== size) throw new RangeError(`${at}: codes has ${t.codes.length} elements, expected ${size}.`);
  if (t.absmax.length !== blocksOf(size)) {
    throw new RangeError(`${at}: absmax has ${t.absmax.length} blocks, expected ${blocksOf(size)}.`);
  }
  if (!t.absmax.every((x) => Number.isFinite(x) && x >= 0)) {
    throw new RangeError(`${at}: absmax must hold finite values >= 0.`);
  }
  const values = dequantizeBlockwise(paddedState(t.codes, t.absmax));
  const a = new Uint32Array(values.buffer), b = new Uint32Array(t.squareAvg.buffer, t.squareAvg.byteOffset, size);
  if (!a.every((x, i) => x === b[i])) {
    throw new RangeError(
      `${at}: squareAvg is not the value of its codes and absmax. 8-bit state loads its codes; to load other ` +
      'f32 values, convert them: convertStateDict(state, \'int8-blockwise\') quantizes squareAvg.',
    );
  }
}

/** An 8-bit state of `codes` (one per element) padded to whole blocks with the zero code. */
export function paddedState(codes: Uint8Array, absmax: Float32Array): {
  size: number; codes: Uint8Array; absmax: Float32Array;
} {
  const padded = new Uint8Array(absmax.length * BLOCK_SIZE).fill(ZERO_CODE);
  padded.set(codes);
  return { size: codes.length, codes: padded, absmax: absmax.slice() };
}

/**
 * A copy of `state` with its mean squares stored as `stateDtype` says, explicitly: to `'int8-blockwise'`
 * every tensor of 4096 elements or more is quantized (its codes and absmax from `squareAvg`, which then
 * holds their values); to `'f32'` the codes and absmax are dropped and `squareAvg` (their exact values)
 * stays. Each group's options say the new stateDtype. Throws (changing nothing) where the options
 * refuse 8-bit state (centered, momentum).
 *
 * @example
 * ```ts
 * const saved = await f32Optimizer.stateDict();
 * eightBitOptimizer.loadStateDict(convertStateDict(saved, 'int8-blockwise'));
 * ```
 */
export function convertStateDict(state: RMSPropState, stateDtype: StateDtype): RMSPropState {
  if (stateDtype !== 'f32' && stateDtype !== 'int8-blockwise') {
    throw new TypeError(`convertStateDict: stateDtype must be 'f32' or 'int8-blockwise', got ${describe(stateDtype)}.`);
  }
  const groups = state.groups.map((g, i) => {
    const options = Object.freeze({ ...g.options, stateDtype });
    if (stateDtype === 'int8-blockwise' && (options.centered || options.momentum > 0)) {
      throw new RangeError(
        `convertStateDict: group ${i} is ${options.centered ? 'centered' : 'with momentum'}, ` +
        'which 8-bit state does not support.',
      );
    }
    return { options, params: g.params.slice() };
  });
  const optionsOf = new Map<number, (typeof groups)[number]['options']>();
  groups.forEach((g) => g.params.forEach((p) => optionsOf.set(p, g.options)));
  const tensors = state.tensors.map((t, index): TensorState => {
    const { codes: _codes, absmax: _absmax, ...rest } = t;
    const o = optionsOf.get(index);
    if (o === undefined || !usesBlockwise8(o, t.size)) return { ...rest, squareAvg: t.squareAvg.slice() };
    const q = quantizeBlockwise(t.squareAvg);
    return {
      ...rest,
      squareAvg: dequantizeBlockwise(q),
      codes: q.codes.slice(0, t.size),
      absmax: q.absmax,
    };
  });
  return { ...state, groups, tensors };
}

function slot(x: unknown, name: string, wanted: boolean, size: number, at: string): void {
  if (!wanted) {
    if (x !== undefined) throw new RangeError(`${at} has a ${name} that these options do not use.`);
    return;
  }
  if (!(x instanceof Float32Array)) throw new TypeError(`${at}: ${name} must be a Float32Array, got ${describe(x)}.`);
  if (x.length !== size) throw new RangeError(`${at}: ${name} has ${x.length} elements, expected ${size}.`);
}
