/**
 * The optimizer's state in TF.js's form, as `tf.train.rmsprop` 4.22 saves and loads it
 * (`getWeights()` / `setWeights()`, and so `model.save(..., { includeOptimizer: true })`): the
 * iteration count `iter` (int32 scalar), then every variable's `<var>/rms`, then every
 * `<var>/momentum`, then, when centered, every `<var>/mg`, each shaped as its variable.
 */
import type { ResolvedOptions, TensorState } from '../index.js';

/** One state slot of one variable, by TF.js's name. */
export interface NamedValues {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: Float32Array;
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
  return [
    ...slot(SLOT_SUFFIXES.squareAvg, (t) => t.squareAvg),
    ...slot(SLOT_SUFFIXES.momentumBuffer, (t) => t.momentumBuffer),
    ...(options.centered ? slot(SLOT_SUFFIXES.gradAvg, (t) => t.gradAvg) : []),
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
  const [iter, ...slots] = weights;
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
      return { rms: r, momentum: m, ...(g ? { mg: g } : {}) };
    }),
  };
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
      squareAvg: p.rms.values,
      ...(options.centered ? { gradAvg: p.mg!.values } : {}),
      ...(options.momentum > 0 ? { momentumBuffer: p.momentum.values } : {}),
    };
  });
}
