/**
 * The optimizer's state in TF.js's form, as `tf.train.rmsprop` 4.22 saves and loads it
 * (`getWeights()` / `setWeights()`, and so `model.save(..., { includeOptimizer: true })`): the
 * iteration count `iter` (int32 scalar), then every variable's `<var>/rms`, then every
 * `<var>/momentum`, then, when centered, every `<var>/mg`, each shaped as its variable.
 *
 * With `stateDtype: 'int8-blockwise'` each variable kept in 8 bits (4096 elements or more) adds two
 * weights after all of those, in variable order: `<var>/rms/codes` (int32, shape [ceil(n / 4)]: the
 * uint8 codes four to a word, element 4w + k in bits 8k..8k+7 of word w, the GPU's layout; the last
 * word's unused bytes 0) and `<var>/rms/absmax` (float32, shape [ceil(n / 256)]: one scale per block).
 * `<var>/rms` then holds their values (`DYNAMIC_MAP[code] * absmax`, for reading); loading takes the
 * codes and absmax exactly and checks that `<var>/rms` is still their value.
 */
import type { ResolvedOptions, StateDtype, TensorState } from '../index.js';
import {
  blocksOf, dequantizeBlockwise, quantizeBlockwise, usesBlockwise8, BLOCK_SIZE, ZERO_CODE,
} from '../rule/blockwise8.js';

/** One state slot of one variable, by TF.js's name: float32, or int32 for 8-bit codes (`/rms/codes`). */
export interface NamedValues {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: Float32Array | Int32Array;
}

/** The names of a variable's 8-bit state weights: `<var>/rms` + these. */
export const CODES_SUFFIX = '/codes', ABSMAX_SUFFIX = '/absmax';

/** Whether a weight is part of a variable's 8-bit state (`<var>/rms/codes`, `<var>/rms/absmax`). */
export function isEightBitWeight(name: string): boolean {
  return name.endsWith(`/rms${CODES_SUFFIX}`) || name.endsWith(`/rms${ABSMAX_SUFFIX}`);
}

/** Codes, one per element, packed four to an int32 word (element 4w + k in bits 8k..8k+7 of word w). */
export function packCodes(codes: Uint8Array): Int32Array {
  const words = new Int32Array(Math.ceil(codes.length / 4));
  for (let i = 0; i < codes.length; i++) words[i >> 2]! |= codes[i]! << ((i & 3) * 8);
  return words;
}

/** The inverse of {@link packCodes}: `size` codes. */
export function unpackCodes(words: Int32Array, size: number): Uint8Array {
  const codes = new Uint8Array(size);
  for (let i = 0; i < size; i++) codes[i] = (words[i >> 2]! >>> ((i & 3) * 8)) & 0xff;
  return codes;
}

/** TF.js's three state slots per variable, as this library's `TensorState` calls them. */
export const SLOT_SUFFIXES = { squareAvg: 'rms', momentumBuffer: 'momentum', gradAvg: 'mg' } as const;

/** A variable as the weights see it. */
export interface WeightVariable {
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
}

/** State read from TF.js-form weights, by position (as TF.js loads it), before it is given to the GPU. */
export interface ParsedWeights {
  readonly iterations: number;
  /** Per variable, in order: TF.js's names (to report), and the slots. */
  readonly variables: readonly {
    readonly rms: NamedValues;
    readonly momentum: NamedValues;
    readonly mg?: NamedValues;
    /** 8-bit state (`<var>/rms/codes`, `<var>/rms/absmax`), for a variable kept in 8 bits. */
    readonly codes?: NamedValues;
    readonly absmax?: NamedValues;
  }[];
}

/**
 * The slots of every variable in TF.js's order. `state[i]` is variable i's state (undefined for a
 * variable the GPU does not hold: it has no elements); with momentum 0 this library keeps no
 * momentum buffer, and the `/momentum` slot is zeros (see the README: TF.js's then holds the last
 * step's update, which its rule multiplies by 0).
 *
 * @example
 * ```ts
 * tfjsSlots([{ name: 'w', shape: [2], size: 2 }], [state], presets.tfjs).map((s) => s.name); // ['w/rms', 'w/momentum']
 * ```
 */
export function tfjsSlots(
  variables: readonly WeightVariable[], state: readonly (TensorState | undefined)[], options: ResolvedOptions,
): NamedValues[] {
  const slot = (suffix: string, pick: (t: TensorState) => Float32Array | undefined) =>
    variables.map((v, i) => ({
      name: `${v.name}/${suffix}`,
      shape: v.shape,
      values: (state[i] && pick(state[i]!)) ?? new Float32Array(v.size),
    }));
  const eightBit = variables.flatMap((v, i) => {
    const t = state[i];
    if (!t?.codes || !t.absmax) return [];
    const rms = `${v.name}/${SLOT_SUFFIXES.squareAvg}`;
    return [
      { name: `${rms}${CODES_SUFFIX}`, shape: [Math.ceil(v.size / 4)], values: packCodes(t.codes) },
      { name: `${rms}${ABSMAX_SUFFIX}`, shape: [t.absmax.length], values: t.absmax.slice() },
    ];
  });
  return [
    ...slot(SLOT_SUFFIXES.squareAvg, (t) => t.squareAvg),
    ...slot(SLOT_SUFFIXES.momentumBuffer, (t) => t.momentumBuffer),
    ...(options.centered ? slot(SLOT_SUFFIXES.gradAvg, (t) => t.gradAvg) : []),
    ...eightBit,
  ];
}

/**
 * Reads TF.js-form weights (what `getWeights()` of `tf.train.rmsprop` or of this optimizer gave,
 * values already on the CPU) for an optimizer that is centered or not. Checks the layout and throws
 * a RangeError naming what does not fit; TF.js itself only divides the count by 2 or 3.
 *
 * @example
 * ```ts
 * const parsed = parseTfjsWeights([{ name: 'iter', shape: [], values: new Float32Array([3]) }, rms, momentum], false);
 * parsed.iterations; // 3
 * ```
 */
export function parseTfjsWeights(
  weights: readonly NamedValues[], centered: boolean, where = 'setWeights',
): ParsedWeights {
  if (weights.length === 0) {
    throw new RangeError(`${where}: no weights given; expected the iteration count first, as getWeights() returns.`);
  }
  const [iter, ...all] = weights;
  const firstEightBit = all.findIndex((w) => isEightBitWeight(w.name));
  const slots = firstEightBit < 0 ? all : all.slice(0, firstEightBit);
  const eightBit = firstEightBit < 0 ? [] : all.slice(firstEightBit);
  if (iter!.values.length !== 1) {
    throw new RangeError(`${where}: the first weight ('${iter!.name}') must be the iteration count, a scalar; ` +
      `it has ${iter!.values.length} elements.`);
  }
  const iterations = iter!.values[0]!;
  if (!Number.isSafeInteger(iterations) || iterations < 0) {
    throw new RangeError(`${where}: the iteration count is ${iterations}, not an integer >= 0.`);
  }
  const hasMg = slots.some((w) => w.name.endsWith(`/${SLOT_SUFFIXES.gradAvg}`));
  if (hasMg !== centered) {
    throw new RangeError(centered
      ? `${where}: these weights hold no '/mg' slots: they were saved by an optimizer that is not centered, and ` +
        'this one is. Create it with centered: false, or start its state afresh.'
      : `${where}: these weights hold '/mg' slots: they were saved by a centered optimizer, and this one is not. ` +
        'Create it with centered: true.');
  }
  const per = centered ? 3 : 2;
  if (slots.length % per !== 0) {
    throw new RangeError(`${where}: ${slots.length} state weights after the iteration count, not a multiple of ` +
      `${per} (rms, momentum${centered ? ', mg' : ''} per variable).`);
  }
  const n = slots.length / per;
  const group = (k: number, suffix: string) => slots.slice(k * n, (k + 1) * n).map((w, i) => {
    if (!w.name.endsWith(`/${suffix}`)) {
      throw new RangeError(`${where}: weight ${1 + k * n + i} is '${w.name}', where TF.js's order puts ` +
        `variable ${i}'s '/${suffix}' ` +
        '(iter, then every /rms, every /momentum, every /mg).');
    }
    return w;
  });
  const rms = group(0, SLOT_SUFFIXES.squareAvg), momentum = group(1, SLOT_SUFFIXES.momentumBuffer);
  const mg = centered ? group(2, SLOT_SUFFIXES.gradAvg) : undefined;
  for (const w of [...rms, ...momentum, ...(mg ?? [])]) {
    if (!(w.values instanceof Float32Array)) throw new TypeError(`${where}: '${w.name}' must be float32.`);
  }
  const quantized = parseEightBit(eightBit, rms, where);
  return {
    iterations,
    variables: rms.map((r, i) => {
      const m = momentum[i]!, g = mg?.[i];
      for (const w of [m, g]) {
        if (w && w.values.length !== r.values.length) {
          throw new RangeError(`${where}: '${w.name}' has ${w.values.length} elements but '${r.name}' ` +
            `${r.values.length}: the slots of one variable must match.`);
        }
      }
      return { rms: r, momentum: m, ...(g ? { mg: g } : {}), ...quantized[i] };
    }),
  };
}

/**
 * The 8-bit state weights (after every other slot): pairs of `<var>/rms/codes` (int32) and
 * `<var>/rms/absmax` (float32), each matched by name to a `<var>/rms` of the same weights.
 */
function parseEightBit(
  weights: readonly NamedValues[], rms: readonly NamedValues[], where: string,
): ({ codes: NamedValues; absmax: NamedValues } | undefined)[] {
  const out: ({ codes: NamedValues; absmax: NamedValues } | undefined)[] = rms.map(() => undefined);
  for (let k = 0; k < weights.length; k += 2) {
    const codes = weights[k]!, absmax = weights[k + 1];
    if (!codes.name.endsWith(`/rms${CODES_SUFFIX}`)) {
      throw new RangeError(`${where}: weight '${codes.name}' comes after the 8-bit state weights start, where ` +
        `a '<variable>/rms${CODES_SUFFIX}' belongs: 8-bit state weights come last, as getWeights() returns them ` +
        `(every /rms, every /momentum, then each 8-bit variable's /rms${CODES_SUFFIX} and /rms${ABSMAX_SUFFIX}).`);
    }
    const base = codes.name.slice(0, -CODES_SUFFIX.length);
    if (absmax?.name !== `${base}${ABSMAX_SUFFIX}`) {
      throw new RangeError(`${where}: '${codes.name}' must be followed by '${base}${ABSMAX_SUFFIX}', ` +
        `got ${absmax ? `'${absmax.name}'` : 'nothing'}.`);
    }
    const i = rms.findIndex((r) => r.name === base);
    if (i < 0) throw new RangeError(`${where}: '${codes.name}' belongs to no '${base}' among these weights.`);
    if (out[i]) throw new RangeError(`${where}: '${codes.name}' is given twice.`);
    if (!(codes.values instanceof Int32Array)) {
      throw new TypeError(
        `${where}: '${codes.name}' must be int32 (four 8-bit codes a word), as getWeights() returns.`);
    }
    if (!(absmax.values instanceof Float32Array)) throw new TypeError(`${where}: '${absmax.name}' must be float32.`);
    out[i] = { codes, absmax };
  }
  return out;
}

/**
 * Matches parsed weights to the optimizer's variables by position (as TF.js does: names may differ
 * when a model is rebuilt, since tfjs-layers numbers its layers per session) and checks element
 * counts. Returns each variable's state, in this library's form, for `Engine.loadState`.
 *
 * @example
 * ```ts
 * const states = statesForVariables(parsed, variables, presets.tfjs); // one TensorState per variable
 * ```
 */
export function statesForVariables(
  parsed: ParsedWeights, variables: readonly WeightVariable[], options: ResolvedOptions, where = 'setWeights',
): TensorState[] {
  if (parsed.variables.length !== variables.length) {
    throw new RangeError(`${where}: the weights hold the state of ${parsed.variables.length} variables; ` +
      'this optimizer trains ' +
      `${variables.length} (${variables.map((v) => v.name).join(', ')}). Load weights saved with the same model.`);
  }
  return variables.map((v, i) => {
    const p = parsed.variables[i]!;
    if (p.rms.values.length !== v.size) {
      throw new RangeError(`${where}: '${p.rms.name}' has ${p.rms.values.length} elements, but variable ${i} ` +
        `('${v.name}') has ${v.size} (shape [${v.shape.join(', ')}]). Load weights saved with the same model, ` +
        'variables in the same order.');
    }
    return {
      name: v.name,
      size: v.size,
      squareAvg: p.rms.values as Float32Array,
      ...(options.centered ? { gradAvg: p.mg!.values as Float32Array } : {}),
      ...(options.momentum > 0 ? { momentumBuffer: p.momentum.values as Float32Array } : {}),
      ...eightBitState(p, v, i, usesBlockwise8(options, v.size), where),
    };
  });
}

/**
 * A variable's 8-bit state from its weights, checked: present exactly when this optimizer keeps the
 * variable in 8 bits, of the right lengths, and `/rms` the value of its codes and absmax (bit for bit).
 */
function eightBitState(
  p: ParsedWeights['variables'][number], v: WeightVariable, i: number, wanted: boolean, where: string,
): { codes?: Uint8Array; absmax?: Float32Array } {
  const at = `variable ${i} ('${v.name}', ${v.size} elements)`;
  if (!wanted) {
    if (!p.codes) return {};
    throw new RangeError(`${where}: '${p.codes.name}' is 8-bit state (saved with stateDtype 'int8-blockwise'), but ` +
      `this optimizer keeps ${at} in f32. Create it with stateDtype: 'int8-blockwise', or convert the weights ` +
      "explicitly: convertTfjsWeights(tf, weights, 'f32').");
  }
  if (!p.codes || !p.absmax) {
    throw new RangeError(`${where}: '${p.rms.name}' is f32 state (no '${p.rms.name}${CODES_SUFFIX}': saved with ` +
      `stateDtype 'f32', or by tf.train.rmsprop), but this optimizer keeps ${at} in 8 bits (stateDtype ` +
      "'int8-blockwise' keeps variables of 4096 elements or more so). Create it with stateDtype: 'f32', or " +
      "convert the weights explicitly: convertTfjsWeights(tf, weights, 'int8-blockwise').");
  }
  const words = Math.ceil(v.size / 4), blocks = blocksOf(v.size);
  if (p.codes.values.length !== words) {
    throw new RangeError(`${where}: '${p.codes.name}' has ${p.codes.values.length} elements; ${at} needs ${words} ` +
      '(four codes a word).');
  }
  const absmax = p.absmax.values as Float32Array;
  if (absmax.length !== blocks) {
    throw new RangeError(`${where}: '${p.absmax.name}' has ${absmax.length} elements; ${at} needs ${blocks} ` +
      `(one per ${BLOCK_SIZE}).`);
  }
  // NaN and Infinity load back (a step with a non-finite gradient and no skipNonFinite stores them).
  if (absmax.some((x) => x < 0)) throw new RangeError(`${where}: '${p.absmax.name}' must hold values >= 0 (or NaN).`);
  const codes = unpackCodes(p.codes.values as Int32Array, v.size);
  const padded = new Uint8Array(blocks * BLOCK_SIZE).fill(ZERO_CODE);
  padded.set(codes);
  const values = dequantizeBlockwise({ size: v.size, codes: padded, absmax });
  const rms = p.rms.values as Float32Array;
  const a = new Uint32Array(values.buffer), b = new Uint32Array(rms.buffer, rms.byteOffset, v.size);
  if (!a.every((x, k) => x === b[k])) {
    throw new RangeError(`${where}: '${p.rms.name}' is not the value of '${p.codes.name}' and '${p.absmax.name}'. ` +
      '8-bit state loads its codes and absmax; to load other values, drop the codes and absmax weights and ' +
      "quantize the /rms values explicitly: convertTfjsWeights(tf, weights, 'int8-blockwise').");
  }
  return { codes, absmax: absmax.slice() };
}

/**
 * TF.js-form weights with every variable's mean square stored as `stateDtype` says, explicitly: to
 * `'int8-blockwise'` every `/rms` of 4096 elements or more is quantized (its `/rms/codes` and
 * `/rms/absmax` added, and `/rms` replaced by their values, as an 8-bit optimizer would store it); to
 * `'f32'` the codes and absmax are dropped (`/rms` holds their exact values). Other weights are kept.
 * Throws a RangeError for centered weights (with `/mg`) to 8 bits, which 8-bit state does not support.
 */
export function convertWeightValues(
  weights: readonly NamedValues[], stateDtype: StateDtype, where: string,
): NamedValues[] {
  if (stateDtype !== 'f32' && stateDtype !== 'int8-blockwise') {
    throw new TypeError(`${where}: stateDtype must be 'f32' or 'int8-blockwise', got ${String(stateDtype)}.`);
  }
  const centered = weights.some((w) => w.name.endsWith(`/${SLOT_SUFFIXES.gradAvg}`));
  if (centered && stateDtype === 'int8-blockwise') {
    throw new RangeError(`${where}: these weights are a centered optimizer's (they hold '/mg' slots), which 8-bit ` +
      'state does not support.');
  }
  const parsed = parseTfjsWeights(weights, centered, where); // checks the layout
  const plain = weights.filter((w) => !isEightBitWeight(w.name));
  if (stateDtype === 'f32') return plain.map((w) => ({ ...w, values: w.values.slice() }));
  const extra: NamedValues[] = [];
  const rmsValues = new Map<string, Float32Array>();
  for (const { rms } of parsed.variables) {
    const values = rms.values as Float32Array;
    if (!usesBlockwise8({ stateDtype }, values.length)) continue;
    const q = quantizeBlockwise(values);
    rmsValues.set(rms.name, dequantizeBlockwise(q));
    extra.push({ name: `${rms.name}${CODES_SUFFIX}`, shape: [Math.ceil(values.length / 4)],
      values: packCodes(q.codes.subarray(0, values.length)) });
    extra.push({ name: `${rms.name}${ABSMAX_SUFFIX}`, shape: [q.absmax.length], values: q.absmax.slice() });
  }
  return [...plain.map((w) => ({ ...w, values: rmsValues.get(w.name) ?? w.values.slice() })), ...extra];
}
