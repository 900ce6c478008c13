/**
 * The CPU twin a GPU optimizer is checked against: `ReferenceRMSProp`, plus, per element of every
 * parameter and state slot, the bound of demo/check/bound.ts on how far a conformant GPU may be
 * from it. The same API as the reference (step, lr, readParams, stateDict, loadStateDict, ...);
 * `bounds()` gives the bounds after the steps taken so far, and `compareWith(gpu)` compares a GPU
 * optimizer's parameters and every state slot with it, at an adapter's tolerance.
 *
 * The bound is computed lazily: `step()` keeps copies of the values before the step and the
 * gradients, and `bounds()` walks the steps not yet bounded. Each bounded step also recomputes the
 * reference's own results and checks them bit for bit, so the bound cannot drift from the rule.
 *
 * 8-bit state (stateDtype 'int8-blockwise'): a step's bound holds from codes and absmax both sides
 * hold. A GPU within the bound may legitimately store a code's neighbour (its quotient on the other
 * side of a midpoint), after which the two runs differ by a whole code step, which no rounding bound
 * covers: so an 8-bit tensor's step is bounded only from a shared state (after `loadStateDict` or
 * `resetBounds`), and bounding a second step without one throws. Compare after every step and load
 * the GPU's state into the twin (demo/check/verify.ts does); on an exact adapter that load changes
 * nothing, since the comparison has just found every bit equal.
 */
import {
  ReferenceRMSProp,
  decodeHalves,
  f32ToBf16,
  f32ToF16,
  gradNormStats,
  type MultiplyAdd,
  type RMSPropConfig,
  type RMSPropState,
  type ResolvedOptions,
  type ReferenceHalfParamSpec,
  type ReferenceParamGroup,
  type ReferenceParamSpec,
  type StepOptions,
} from '../../src/index.js';
import { stepHyper } from '../../src/rule/reference.js';
import { BLOCK_SIZE, DYNAMIC_MIDPOINTS, quantizeBlockwise } from '../../src/rule/blockwise8.js';
import { REDUCE_TARGET_PARTIALS } from '../../src/gpu/reduce-plan.js';
import {
  blockwise8Bounds, boundStep, dequantizeBounds, normBound, zeroBounds, type Blockwise8Bounds, type TensorBounds,
} from './bound.js';
import {
  compareCodes, compareTensor, WorstSoFar, type CompareOptions, type TensorComparison, type Tolerance,
} from './compare.js';

type Spec = ReferenceParamSpec | ReferenceHalfParamSpec;

/** The bounds after the steps so far: per tensor, in the order the parameters were given. */
export interface ReferenceBounds {
  /** For what `readParams()` returns (a 16-bit parameter: its written, rounded value). */
  readonly params: readonly Float64Array[];
  readonly state: readonly {
    readonly squareAvg: Float64Array;
    readonly gradAvg?: Float64Array;
    readonly momentumBuffer?: Float64Array;
    readonly master?: Float64Array;
    /** 8-bit state after a step from a shared state: absmax and quotient bounds (`squareAvg`: the unquantized v's). */
    readonly blockwise8?: Blockwise8Bounds;
  }[];
  /** The bound on the last bounded step's gradient norm (0 before any with the pre-pass). */
  readonly norm: number;
}

/** What a step needs to be bounded later: copies made when it was taken. */
interface PendingStep {
  readonly kind: 'step';
  readonly before: Promise<[Float32Array[], RMSPropState]>;
  readonly after: Promise<[Float32Array[], RMSPropState]>;
  readonly grads: Float32Array[];
  readonly step: number;
  /** Tensors the step left as they were (`keep`): copied back exactly, so their bounds stay. */
  readonly keep: readonly number[];
  /** The skip counts before and after (skipNonFinite): the GPU skips on the same, exact, test of the bits. */
  readonly skipped?: Promise<[number, number]>;
}

/** The state was loaded (GPU and CPU hold the same bits again): the bounds restart at 0. */
interface PendingReset {
  readonly kind: 'reset';
}

/** Where a comparison of the GPU with the twin failed, or how close it came. */
export interface OptimizerComparison {
  readonly worst: WorstSoFar;
  /** One entry per array compared: `'<name>' param`, `'<name>'.squareAvg`, ... */
  readonly tensors: readonly { readonly what: string; readonly result: TensorComparison }[];
}

const SLOTS = ['squareAvg', 'gradAvg', 'momentumBuffer', 'master'] as const;

/**
 * A `ReferenceRMSProp` that also bounds how far a GPU may be from it.
 *
 * @example
 * ```ts
 * const twin = new CheckedReference([{ param: w, grad: gw, name: 'w' }], { lr: 0.01 }, { multiplyAdd });
 * twin.step();
 * const report = await twin.compareWith(gpuOptimizer, toleranceFor(adapterDescription));
 * ```
 */
export class CheckedReference {
  /** The reference itself. */
  readonly cpu: ReferenceRMSProp;
  readonly multiplyAdd: MultiplyAdd;
  /** The pre-pass's target number of partials (`reduceTargetPartials(device)`): its order of additions. */
  readonly reducePartials: number;
  /** Whether bounds are kept (without them only the exact tolerance can be checked). */
  readonly tracked: boolean;
  readonly #grads: (Float32Array | Uint16Array)[];
  /** The param group of each tensor, in the order the parameters were given. */
  readonly #groupOf: number[];
  readonly #pending: (PendingStep | PendingReset)[] = [];
  #bounds: TensorBounds[] | undefined;
  /** Per 8-bit tensor, the bounds of its last step (undefined: none since the state was shared). */
  #blockwise8: (Blockwise8Bounds | undefined)[] = [];
  /** Per tensor: whether GPU and twin hold the same state (no step bounded since the last reset). */
  #shared: boolean[] = [];
  #normError = 0;

  constructor(
    params: readonly Spec[] | readonly ReferenceParamGroup[],
    options?: RMSPropConfig,
    { multiplyAdd = 'fused', track = true, reducePartials = REDUCE_TARGET_PARTIALS.gpu }:
      { multiplyAdd?: MultiplyAdd; track?: boolean; reducePartials?: number } = {},
  ) {
    this.cpu = new ReferenceRMSProp(params, options, { multiplyAdd, reducePartials });
    this.multiplyAdd = multiplyAdd;
    this.reducePartials = reducePartials;
    this.tracked = track;
    const list = params as readonly (Spec | ReferenceParamGroup)[];
    const flat = list.flatMap((p, g) => ('params' in p ? p.params.map((s) => [s, g] as const) : [[p, 0] as const]));
    this.#grads = flat.map(([s]) => s.grad);
    this.#groupOf = flat.map(([, g]) => g);
  }

  get stepCount(): number {
    return this.cpu.stepCount;
  }

  get lr(): number {
    return this.cpu.lr;
  }

  set lr(value: number) {
    this.cpu.lr = value;
  }

  /** The options of each param group, with their current learning rates (as the reference's). */
  get groupOptions(): ResolvedOptions[] {
    return this.cpu.groupOptions;
  }

  /** One step of the reference; with tracking, what the bound of this step needs is kept. */
  step(options?: StepOptions): void {
    if (!this.tracked) {
      this.cpu.step(options);
      return;
    }
    const state = this.cpu.stateDict(); // async methods that copy synchronously: a snapshot now
    const before = Promise.all([this.cpu.readParams(), state]);
    const groups = this.cpu.groupOptions;
    const grads = this.#grads.map((g, i) => {
      const dtype = groups[this.#groupOf[i]!]!.gradDtype;
      if (g instanceof Float32Array) return g.slice();
      return decodeHalves(g, dtype as 'f16' | 'bf16', new Float32Array(g.length));
    });
    // skippedSteps() is async only in its signature: it counts when called.
    const skippedBefore = groups[0]!.skipNonFinite ? this.cpu.skippedSteps() : undefined;
    const step = this.cpu.stepCount;
    this.cpu.step(options); // checks keep (throws before anything changes)
    const keep = options?.keep ?? [];
    const after = Promise.all([this.cpu.readParams(), this.cpu.stateDict()]);
    const skipped = skippedBefore ? Promise.all([skippedBefore, this.cpu.skippedSteps()]) : undefined;
    this.#pending.push({ kind: 'step', before, after, grads, step, keep, ...(skipped ? { skipped } : {}) });
  }

  readParams(): Promise<Float32Array<ArrayBuffer>[]> {
    return this.cpu.readParams();
  }

  stateDict(): Promise<RMSPropState> {
    return this.cpu.stateDict();
  }

  skippedSteps(): Promise<number> {
    return this.cpu.skippedSteps();
  }

  lastGradNorm(): Promise<number> {
    return this.cpu.lastGradNorm();
  }

  /**
   * Loads `state` into the reference. The bounds restart at 0: call it when the GPU optimizer
   * holds the same state and parameters (both loaded from one checkpoint, or one from the other).
   */
  loadStateDict(state: RMSPropState): void {
    this.cpu.loadStateDict(state);
    this.#pending.push({ kind: 'reset' });
  }

  /** The bounds restart at 0: the caller has set the GPU's parameters and state to the reference's bits. */
  resetBounds(): void {
    this.#pending.push({ kind: 'reset' });
  }

  destroy(): void {
    this.cpu.destroy();
  }

  /** The bounds after every step taken so far (copies); undefined when not tracked. */
  async bounds(): Promise<ReferenceBounds | undefined> {
    if (!this.tracked) return undefined;
    const shape = await this.cpu.stateDict();
    const options = shape.groups.map((g) => g.options);
    const groupOf: number[] = [];
    shape.groups.forEach((g, k) => g.params.forEach((p) => { groupOf[p] = k; }));
    const fresh = () => {
      this.#blockwise8 = [];
      this.#shared = shape.tensors.map(() => true);
      return shape.tensors.map((t, i) => zeroBounds(t.size, options[groupOf[i]!]!));
    };
    this.#bounds ??= fresh();
    while (this.#pending.length > 0) {
      const next = this.#pending.shift()!;
      if (next.kind === 'reset') {
        this.#bounds = fresh();
        this.#normError = 0;
        continue;
      }
      await this.#bound(next, groupOf);
    }
    const bounds = this.#bounds;
    // Copies: the twin's own arrays go on changing with later steps.
    return {
      params: bounds.map((b, i) => (options[groupOf[i]!]!.paramDtype !== 'f32' ? b.written! : b.param).slice()),
      state: bounds.map((b, i) => ({
        squareAvg: b.squareAvg.slice(),
        ...(b.gradAvg ? { gradAvg: b.gradAvg.slice() } : {}),
        ...(b.momentumBuffer ? { momentumBuffer: b.momentumBuffer.slice() } : {}),
        ...(shape.tensors[i]!.master ? { master: b.param.slice() } : {}),
        // Made anew by each step: not changed later.
        ...(this.#blockwise8[i] ? { blockwise8: this.#blockwise8[i] } : {}),
      })),
      norm: this.#normError,
    };
  }

  async #bound(p: PendingStep, groupOf: readonly number[]): Promise<void> {
    const [[paramsBefore, before], [paramsAfter, after]] = await Promise.all([p.before, p.after]);
    const [skippedBefore, skippedAfter] = (await p.skipped) ?? [0, 0];
    if (skippedAfter > skippedBefore) return; // skipped on both sides: nothing changed
    const groups = after.groups.map((g) => g.options);
    const first = groups[0]!;
    let gradScale = 1, scaleError = 0;
    if (first.clipGradNorm > 0 || first.skipNonFinite) {
      const unscale = Math.fround(1 / first.lossScale);
      const stats = gradNormStats(p.grads, first.clipGradNorm, this.multiplyAdd, unscale, this.reducePartials);
      const b = normBound(p.grads, first.clipGradNorm, unscale, stats.norm, stats.scale, this.reducePartials);
      gradScale = stats.scale;
      scaleError = b.scaleError;
      this.#normError = b.normError;
    }
    before.tensors.forEach((t, i) => {
      if (p.keep.includes(i)) return; // copied back bit for bit on the GPU: its bound stays as it was
      const o = groups[groupOf[i]!]!;
      const blockwise8 = t.codes !== undefined;
      if (blockwise8) {
        if (!this.#shared[i]) {
          throw new Error(`CheckedReference: '${t.name}' keeps 8-bit state, whose bound holds for one step from ` +
            'codes and absmax both sides hold (a GPU may store a neighbouring code, and the steps after that are ' +
            'not bounded): load the GPU\'s parameters and state into the twin after each compared step ' +
            '(loadStateDict), as demo/check/verify.ts does.');
        }
        // The GPU dequantizes the shared codes and absmax with one multiplication of its own.
        this.#bounds![i]!.squareAvg.set(dequantizeBounds(t.squareAvg));
      }
      const hyper = stepHyper(o, { step: p.step + 1, gradScale });
      const param = t.master ?? paramsBefore[i]!;
      const pre = { param, squareAvg: t.squareAvg, gradAvg: t.gradAvg, momentumBuffer: t.momentumBuffer };
      const out = boundStep(pre, p.grads[i]!, o, hyper, this.multiplyAdd, scaleError, this.#bounds![i]!);
      // The bound's own run of the rule must be the reference's, bit for bit.
      const a = after.tensors[i]!;
      const half = o.paramDtype === 'f32' ? undefined : o.paramDtype;
      const written = half ? roundTo16(out.param, half) : out.param;
      // 8-bit state: the unquantized v requantized must be the twin's codes and absmax.
      const q = blockwise8 ? quantizeBlockwise(out.squareAvg) : undefined;
      const codes = q ? Float32Array.from(q.codes.subarray(0, t.size)) : undefined;
      const checks: [Float32Array | undefined, Float32Array | undefined, string][] = [
        [written, paramsAfter[i]!, 'param'], [blockwise8 ? undefined : out.squareAvg, a.squareAvg, 'squareAvg'],
        [codes, a.codes && Float32Array.from(a.codes), 'codes'], [q?.absmax, a.absmax, 'absmax'],
        [out.gradAvg, a.gradAvg, 'gradAvg'], [out.momentumBuffer, a.momentumBuffer, 'momentumBuffer'],
        [a.master ? out.param : undefined, a.master, 'master'],
      ];
      for (const [mine, theirs, slot] of checks) {
        if (!mine || !theirs) continue;
        const r = compareTensor(mine, theirs, undefined, 'exact', { allowNonFinite: true });
        if (!r.pass) {
          throw new Error(`demo/check/bound.ts no longer follows the reference (step ${p.step + 1}, ` +
            `'${t.name}'.${slot}: ` +
            `${r.worstUlps} ULPs at [${r.index}]): keep boundStep line for line with src/rule/reference.ts stepResolved.`);
        }
      }
      if (blockwise8) {
        this.#blockwise8[i] = blockwise8Bounds(out.squareAvg, this.#bounds![i]!.squareAvg, a.absmax!, BLOCK_SIZE);
        this.#shared[i] = false;
      }
    });
  }

  /**
   * Compares a GPU optimizer's parameters and every state slot with this twin at `tolerance`:
   * exact, 0 ULPs everywhere; bound, each element within its bound.
   */
  async compareWith(
    gpu: { readParams(): Promise<Float32Array[]>; stateDict(): Promise<RMSPropState> },
    tolerance: Tolerance,
    { state = true, ...options }: { state?: boolean } & CompareOptions = {},
  ): Promise<OptimizerComparison> {
    const [gpuParams, cpuParams, bounds] = await Promise.all([gpu.readParams(), this.cpu.readParams(), this.bounds()]);
    const [gpuState, cpuState] = state
      ? await Promise.all([gpu.stateDict(), this.cpu.stateDict()])
      : [undefined, undefined];
    return compareAll(gpuParams, cpuParams, gpuState, cpuState, bounds, tolerance, options);
  }
}

/**
 * Parameters and, when given, every state slot of a GPU optimizer against its twin, at `tolerance`.
 *
 * @example
 * ```ts
 * const [g, c, b] = await Promise.all([gpu.readParams(), twin.readParams(), twin.bounds()]);
 * const r = compareAll(g, c, undefined, undefined, b, tolerance);
 * ```
 */
export function compareAll(
  gpuParams: readonly Float32Array[],
  cpuParams: readonly Float32Array[],
  gpuState: RMSPropState | undefined,
  cpuState: RMSPropState | undefined,
  bounds: ReferenceBounds | undefined,
  tolerance: Tolerance,
  options: CompareOptions = {},
): OptimizerComparison {
  if (tolerance.kind === 'bound' && !bounds) {
    throw new Error('compareAll: the bound tolerance needs a tracked CheckedReference.');
  }
  const worst = new WorstSoFar();
  const tensors: { what: string; result: TensorComparison }[] = [];
  const add = (what: string, g: Float32Array, c: Float32Array, b: Float64Array | undefined) => {
    const result = compareTensor(g, c, b, tolerance.kind, options);
    worst.add(result, what);
    tensors.push({ what, result });
  };
  if (gpuParams.length !== cpuParams.length) {
    throw new RangeError(`${gpuParams.length} GPU tensors against ${cpuParams.length} CPU tensors.`);
  }
  const names = cpuState?.tensors.map((t) => t.name) ?? cpuParams.map((_, i) => `${i}`);
  cpuParams.forEach((c, i) => add(`'${names[i]}' param`, gpuParams[i]!, c, bounds?.params[i]));
  if (gpuState && cpuState) {
    if (gpuState.step !== cpuState.step) {
      throw new Error(`state step ${gpuState.step} on the GPU, ${cpuState.step} on the CPU`);
    }
    cpuState.tensors.forEach((t, i) => {
      const g = gpuState.tensors[i]!;
      for (const slot of SLOTS) {
        if ((g[slot] === undefined) !== (t[slot] === undefined)) {
          throw new Error(`'${t.name}'.${slot} is present on one side only`);
        }
        // 8-bit state: squareAvg is the codes' value; within the bound a code may be its neighbour.
        if (slot === 'squareAvg' && t.codes && tolerance.kind === 'bound') continue;
        if (t[slot]) add(`'${t.name}'.${slot}`, g[slot]!, t[slot], bounds?.state[i]?.[slot]);
      }
      if ((g.codes === undefined) !== (t.codes === undefined)) {
        throw new Error(`'${t.name}' has 8-bit state (codes, absmax) on one side only`);
      }
      if (t.codes && t.absmax) {
        const b8 = bounds?.state[i]?.blockwise8;
        const codes = compareCodes(g.codes!, t.codes, b8, DYNAMIC_MIDPOINTS, tolerance.kind);
        worst.add(codes, `'${t.name}'.codes`);
        tensors.push({ what: `'${t.name}'.codes`, result: codes });
        // Without a step's bound (none since the state was shared) the absmax must be equal: a bound of 0.
        const absmaxBound = b8?.absmax ?? (bounds ? new Float64Array(t.absmax.length) : undefined);
        add(`'${t.name}'.absmax`, g.absmax!, t.absmax, absmaxBound);
      }
    });
  }
  return { worst, tensors };
}

function roundTo16(values: Float32Array, dtype: 'f16' | 'bf16'): Float32Array {
  const encode = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  return decodeHalves(Uint16Array.from(values, (x) => encode(x)), dtype, new Float32Array(values.length));
}
