/**
 * `ReferenceRMSProp`: the `RMSProp` API over the CPU reference, for callers without WebGPU and for
 * checking the GPU. Its state dicts are interchangeable with the GPU optimizer's.
 */
import { resolveKeep, type KeepTarget, type StepOptions } from './step-options.js';
import { validateLr, type RMSPropConfig, type ResolvedOptions } from './options.js';
import { scheduledLrs, type LrSchedule } from './schedules.js';
import { decodeHalves, f32ToBf16, f32ToF16 } from './half.js';
import { groupParams, specName } from '../gpu/params.js';
import { REDUCE_TARGET_PARTIALS } from '../gpu/reduce-plan.js';
import {
  checkMultiplyAdd,
  checkStep,
  createReferenceState,
  gradNormStats,
  stepHyper,
  stepResolved,
  type MultiplyAdd,
  type ReferenceState,
} from './reference.js';
import { checkStateDict, paddedState, type RMSPropState } from '../state/state-dict.js';
import {
  createBlockwise8State, dequantizeBlockwise, stepBlockwise8Resolved, usesBlockwise8, type Blockwise8State,
} from './blockwise8.js';

/**
 * One tensor for the CPU optimizer: parameter and gradient as Float32Arrays of the same length.
 *
 * @example
 * ```ts
 * const spec: ReferenceParamSpec = { param: new Float32Array(10), grad: new Float32Array(10), name: 'w' };
 * ```
 */
export interface ReferenceParamSpec {
  /** The parameter values, updated in place by `step()`. */
  param: Float32Array;
  /** The gradient, only read: as many elements as `param`. */
  grad: Float32Array;
  /** Used in error messages and state dicts; defaults to `param{index}`. */
  name?: string;
}

/**
 * One tensor with 16-bit floats, one bit pattern per element: its gradient (gradDtype 'f16' or
 * 'bf16': `grad` a Uint16Array), its parameter (paramDtype 'f16' or 'bf16': `param` a Uint16Array,
 * updated in place, rounded as the GPU rounds), or both.
 *
 * @example
 * ```ts
 * const spec: ReferenceHalfParamSpec = { param: new Float32Array(4), grad: encodeHalves(new Float32Array(4), 'f16') };
 * const half: ReferenceHalfParamSpec = {
 *   param: encodeHalves(new Float32Array([1, 2]), 'bf16'),
 *   grad: new Float32Array(2),
 * };
 * ```
 */
export interface ReferenceHalfParamSpec {
  /** The parameter, updated in place: a Float32Array (paramDtype 'f32') or a Uint16Array of f16 / bf16 bit patterns. */
  param: Float32Array | Uint16Array;
  /**
   * The gradient, only read: a Float32Array (gradDtype 'f32') or a Uint16Array of bit patterns; as many
   * elements as `param`.
   */
  grad: Float32Array | Uint16Array;
  /** Used in error messages and state dicts; defaults to `param{index}`. */
  name?: string;
}

/**
 * How the CPU optimizer rounds; see {@link MultiplyAdd}.
 *
 * @example
 * ```ts
 * const rounding: ReferenceRounding = { multiplyAdd: await detectMultiplyAdd(device) }; // round as this GPU does
 * const twin = new ReferenceRMSProp([{ param: w, grad: gw }], { lr: 0.01 }, rounding);
 * ```
 */
export interface ReferenceRounding {
  /** `'fused'` (default) rounds as PyTorch; `'separate'` as SwiftShader (`detectMultiplyAdd`). */
  multiplyAdd?: MultiplyAdd;
  /**
   * The gradient pre-pass's target number of partial sums, which fixes its order of additions:
   * `reduceTargetPartials(device)` for the GPU this twins (default: a GPU's, 4096).
   */
  reducePartials?: number;
}

/**
 * Parameters that share options, as {@link ParamGroup} for the GPU optimizer.
 *
 * @example
 * ```ts
 * const w = new Float32Array(6), gw = new Float32Array(6), b = new Float32Array(2), gb = new Float32Array(2);
 * const groups: ReferenceParamGroup[] = [
 *   { params: [{ param: w, grad: gw }] },
 *   { params: [{ param: b, grad: gb }], weightDecay: 0 },
 * ];
 * const optimizer = new ReferenceRMSProp(groups, { lr: 1e-3, weightDecay: 1e-4 });
 * ```
 */
export type ReferenceParamGroup = {
  /**
   * The group's parameters, at least one. Parameters are numbered across all groups in order: the
   * numbers a state dict's `groups[g].params` lists.
   */
  params: (ReferenceParamSpec | ReferenceHalfParamSpec)[];
} & RMSPropConfig;

interface CpuParam {
  readonly name: string;
  readonly index: number;
  readonly group: number;
  readonly size: number;
  /** The parameters as f32: the caller's array; or, for 16-bit parameters, the master copy or the decoded values. */
  readonly values: Float32Array;
  /** The caller's 16-bit parameters, if paramDtype is 'f16' or 'bf16': encoded from `values` after each step. */
  readonly paramHalves?: Uint16Array;
  /** Whether `values` is a master copy (masterWeights) that persists between steps. */
  readonly master: boolean;
  /** The gradients as f32: the caller's array, or (16-bit gradients) decoded into this one before each step. */
  readonly grads: Float32Array;
  /** The caller's 16-bit gradients, if gradDtype is 'f16' or 'bf16'. */
  readonly halves?: Uint16Array;
  readonly param: { buffer: object; offset: number; size: number };
  readonly grad: { buffer: object; offset: number; size: number };
  /** f32 state (an 8-bit tensor's is unused: size 0 would not pass checkStep, so it is not checked). */
  state: ReferenceState;
  /** 8-bit state (stateDtype 'int8-blockwise', 4096 elements or more), instead of `state`. */
  state8?: Blockwise8State;
}

/**
 * RMSProp on the CPU, with the same API as the WebGPU `RMSProp`: it updates the caller's
 * Float32Arrays in place. Every operation rounds to f32 as PyTorch's CPU kernels round, so it
 * reproduces torch.optim.RMSprop bit for bit, and the GPU to the last bit or a few ULPs.
 *
 * @example
 * ```ts
 * const w = new Float32Array([1, 2]), gw = new Float32Array([0.5, -0.5]);
 * const optimizer = new ReferenceRMSProp([{ param: w, grad: gw }], { lr: 0.01 });
 * optimizer.step(); // w is updated in place
 * ```
 */
export class ReferenceRMSProp {
  readonly #groups: { options: ResolvedOptions; params: CpuParam[]; schedule?: LrSchedule }[];
  readonly #lrs: number[];
  readonly #schedules: (LrSchedule | undefined)[];
  readonly #multiplyAdd: MultiplyAdd;
  readonly #reducePartials: number;
  #step = 0;
  #skipped = 0;
  #lastNorm = 0;
  #destroyed = false;

  constructor(
    params: readonly (ReferenceParamSpec | ReferenceHalfParamSpec)[] | readonly ReferenceParamGroup[],
    options?: RMSPropConfig,
    { multiplyAdd = 'fused', reducePartials = REDUCE_TARGET_PARTIALS.gpu }: ReferenceRounding = {},
  ) {
    checkMultiplyAdd(multiplyAdd, 'rounding.multiplyAdd');
    if (!Number.isInteger(reducePartials) || reducePartials < 1) {
      throw new RangeError(`rounding.reducePartials must be a positive integer (reduceTargetPartials(device)), got ${
        String(reducePartials)}.`);
    }
    this.#multiplyAdd = multiplyAdd;
    this.#reducePartials = reducePartials;
    this.#groups = groupParams(params, options, (
      spec: ReferenceParamSpec | ReferenceHalfParamSpec,
      index,
      group,
      where,
      groupOptions,
    ): CpuParam => {
      const { name, label } = specName(spec, index, where);
      const packed = groupOptions.gradDtype !== 'f32';
      const paramDtype = groupOptions.paramDtype;
      for (const key of ['param', 'grad'] as const) {
        const x = spec[key];
        const dtype = key === 'grad' ? groupOptions.gradDtype : paramDtype;
        if (dtype !== 'f32') {
          if (!(x instanceof Uint16Array)) {
            throw new TypeError(
              `${label}.${key} must be a Uint16Array of ${dtype} bit patterns (${key}Dtype '${dtype}'); ` +
              'encodeHalves makes one.',
            );
          }
        } else if (!(x instanceof Float32Array)) {
          throw new TypeError(
            `${label}.${key} must be a Float32Array (or a Uint16Array with ${key}Dtype 'f16' / 'bf16').`,
          );
        }
        if (x.length === 0) throw new RangeError(`${label}.${key} is empty: a parameter needs at least one element.`);
      }
      if (spec.grad.length !== spec.param.length) {
        throw new RangeError(
          `${label}: grad has ${spec.grad.length} elements but param has ${spec.param.length}: they must match.`,
        );
      }
      const range = (x: Float32Array | Uint16Array) => ({ buffer: x.buffer, offset: x.byteOffset, size: x.byteLength });
      const halves = paramDtype !== 'f32' ? (spec.param as Uint16Array) : undefined;
      const master = halves !== undefined && groupOptions.masterWeights;
      return {
        name, index, group, size: spec.param.length,
        // The master copy starts as the caller's 16-bit values, decoded exactly (as the GPU's initMaster).
        values: halves
          ? decodeHalves(halves, paramDtype as 'f16' | 'bf16', new Float32Array(halves.length))
          : (spec.param as Float32Array),
        ...(halves ? { paramHalves: halves } : {}),
        master,
        ...(packed
          ? { grads: new Float32Array(spec.param.length), halves: spec.grad as Uint16Array }
          : { grads: spec.grad as Float32Array }),
        param: range(spec.param), grad: range(spec.grad),
        ...(usesBlockwise8(groupOptions, spec.param.length)
          ? {
            state: createReferenceState(1, { ...groupOptions, stateDtype: 'f32' }),
            state8: createBlockwise8State(spec.param.length, groupOptions),
          }
          : { state: createReferenceState(spec.param.length, groupOptions) }),
      };
    });
    this.#lrs = this.#groups.map((g) => g.options.lr);
    this.#schedules = this.#groups.map((g) => g.schedule);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.#step;
  }

  /** The learning rate (of the first group); setting it sets every group's. */
  get lr(): number {
    return this.#lrs[0]!;
  }

  /**
   * Sets every param group's learning rate to `value` and drops any schedule. Throws a TypeError
   * (not a number) or RangeError (NaN, ±Infinity or negative) before changing anything.
   *
   * @example
   * ```ts
   * optimizer.lr = 1e-4; // every group, from the next step() on
   * ```
   */
  set lr(value: number) {
    validateLr(value, 'lr');
    this.#lrs.fill(value);
    this.#schedules.fill(undefined); // a fixed lr replaces any schedule
  }

  /** The options of each param group, with their current learning rates. */
  get groupOptions(): ResolvedOptions[] {
    return this.#groups.map((g, i) => Object.freeze({ ...g.options, lr: this.#lrs[i]! }));
  }

  /**
   * One step over every parameter, in place; `options.keep` lists tensors to leave as they are, as
   * `RMSProp.step(encoder, { keep })` (their gradients still count in the pre-pass).
   *
   * @example
   * ```ts
   * reference.step({ keep: [1] }); // tensor 1 had no gradient this step
   * ```
   */
  step(options?: StepOptions): void {
    this.#checkUsable('step()');
    const keep = resolveKeep(options, this.#keepTargets(), 'step()');
    const lrs = scheduledLrs(this.#schedules, this.#lrs, this.#step, 'step()');
    const groups = this.#groups.map((g, i) => Object.freeze({ ...g.options, lr: lrs?.[i] ?? this.#lrs[i]! }));
    for (const [g, group] of this.#groups.entries()) {
      for (const p of group.params) {
        if (!p.state8) checkStep(p.values, p.grads, p.state, groups[g]!, `'${p.name}': `);
      }
    }
    lrs?.forEach((lr, g) => { this.#lrs[g] = lr; });
    // 16-bit gradients, decoded exactly (as the shaders decode them); 16-bit parameters without a master copy too.
    for (const group of this.#groups) {
      for (const p of group.params) {
        if (p.halves) decodeHalves(p.halves, group.options.gradDtype as 'f16' | 'bf16', p.grads);
        if (p.paramHalves && !p.master) {
          decodeHalves(p.paramHalves, group.options.paramDtype as 'f16' | 'bf16', p.values);
        }
      }
    }
    // The pre-pass of skipNonFinite and clipGradNorm (optimizer-wide: the same in every group).
    const first = groups[0]!;
    let gradScale = 1;
    if (first.skipNonFinite || first.clipGradNorm > 0) {
      const stats = gradNormStats(
        this.#groups.flatMap((g) => g.params.map((p) => p.grads)),
        first.clipGradNorm,
        this.#multiplyAdd,
        Math.fround(1 / first.lossScale),
        this.#reducePartials,
      );
      this.#lastNorm = stats.norm;
      gradScale = stats.scale;
      if (first.skipNonFinite && stats.skip) {
        this.#skipped++;
        this.#step++;
        return;
      }
    }
    let index = 0;
    for (const [g, group] of this.#groups.entries()) {
      const hyper = stepHyper(groups[g]!, { step: this.#step + 1, gradScale });
      for (const p of group.params) {
        if (keep.includes(index++)) continue;
        if (p.state8) stepBlockwise8Resolved(p.values, p.grads, p.state8, groups[g]!, this.#multiplyAdd, hyper);
        else stepResolved(p.values, p.grads, p.state, groups[g]!, this.#multiplyAdd, hyper);
        if (p.paramHalves) encodeInto(p.values, group.options.paramDtype as 'f16' | 'bf16', p.paramHalves);
      }
    }
    this.#step++;
  }

  /** What `keep` is checked against: every tensor's name and parameter type (no buffers here). */
  #keepTargets(): KeepTarget[] {
    return this.#groups.flatMap((g) => g.params.map((p) => ({ name: p.name, paramDtype: g.options.paramDtype })));
  }

  /**
   * Steps skipped by `skipNonFinite` (a NaN or ±Inf gradient); as `RMSProp.skippedSteps()`.
   *
   * @example
   * ```ts
   * const skipped = await optimizer.skippedSteps();
   * ```
   */
  async skippedSteps(): Promise<number> {
    this.#checkUsable('skippedSteps()');
    return this.#skipped;
  }

  /**
   * The global gradient norm of the last step (clipGradNorm or skipNonFinite); as `RMSProp.lastGradNorm()`.
   *
   * @example
   * ```ts
   * const norm = await optimizer.lastGradNorm();
   * ```
   */
  async lastGradNorm(): Promise<number> {
    this.#checkUsable('lastGradNorm()');
    const o = this.#groups[0]!.options;
    if (!o.skipNonFinite && !(o.clipGradNorm > 0)) {
      throw new Error(
        'ReferenceRMSProp.lastGradNorm() needs the gradient pre-pass: ' +
        'create the optimizer with clipGradNorm > 0 or skipNonFinite: true.',
      );
    }
    return this.#lastNorm;
  }

  /** Copies of the parameters, in the order given. */
  async readParams(): Promise<Float32Array<ArrayBuffer>[]> {
    this.#checkUsable('readParams()');
    return this.#groups.flatMap((g) => g.params.map((p) => p.paramHalves
      ? decodeHalves(p.paramHalves, g.options.paramDtype as 'f16' | 'bf16', new Float32Array(p.size))
      : p.values.slice()));
  }

  /** A copy of the state, in the same form as `RMSProp.stateDict()`. */
  async stateDict(): Promise<RMSPropState> {
    this.#checkUsable('stateDict()');
    const groups = this.groupOptions;
    return {
      step: this.#step,
      groups: groups.map((options, g) => ({ options, params: this.#groups[g]!.params.map((p) => p.index) })),
      tensors: this.#groups.flatMap((g) => g.params.map(({ name, size, state, state8, values, master }) => ({
        name,
        size,
        squareAvg: state8 ? dequantizeBlockwise(state8) : state.squareAvg.slice(),
        ...(state8 ? { codes: state8.codes.slice(0, size), absmax: state8.absmax.slice() } : {}),
        ...(state.gradAvg ? { gradAvg: state.gradAvg.slice() } : {}),
        ...(state.momentumBuffer ? { momentumBuffer: state.momentumBuffer.slice() } : {}),
        ...(master ? { master: values.slice() } : {}),
      }))),
      ...(this.#groups[0]!.options.skipNonFinite ? { skippedSteps: this.#skipped } : {}),
    };
  }

  /** Restores a state from `stateDict()` of this class or of the GPU `RMSProp`; checks it first. */
  loadStateDict(state: RMSPropState): void {
    this.#checkUsable('loadStateDict()');
    const lrs = checkStateDict(state, { groups: this.#groups });
    for (const g of this.#groups) {
      for (const p of g.params) {
        const t = state.tensors[p.index]!;
        if (p.state8) {
          p.state8 = paddedState(t.codes!, t.absmax!);
          continue;
        }
        p.state = {
          size: p.size,
          squareAvg: t.squareAvg.slice(),
          ...(t.gradAvg ? { gradAvg: t.gradAvg.slice() } : {}),
          ...(t.momentumBuffer ? { momentumBuffer: t.momentumBuffer.slice() } : {}),
        };
        if (p.master) p.values.set(t.master!);
      }
    }
    lrs.forEach((lr, g) => { this.#lrs[g] = lr; });
    if (state.skippedSteps !== undefined) this.#skipped = state.skippedSteps;
    this.#step = state.step;
  }

  /** Drops the state. Safe to call twice; any other call afterwards throws. */
  destroy(): void {
    this.#destroyed = true;
  }

  #checkUsable(what: string): void {
    if (this.#destroyed) {
      throw new Error(
        `ReferenceRMSProp.${what} after destroy(): create a new optimizer (and loadStateDict to resume).`,
      );
    }
  }
}

/** Rounds f32 `values` to 16-bit patterns into `out`, as the shader's encodeWord (nearest, ties to even). */
function encodeInto(values: Float32Array, dtype: 'f16' | 'bf16', out: Uint16Array): void {
  const encode = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < values.length; i++) out[i] = encode(values[i]!);
}
