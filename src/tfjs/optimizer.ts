/**
 * `tfjsRMSProp(tf, config)`: a `tf.Optimizer` whose step is this library's RMSProp on TF.js's own
 * WebGPU device, with TF.js's option names, weight names and serialization. The class is made from
 * the caller's `tf` (so this package never bundles a TF.js of its own) and registered with
 * `tf.serialization` as `'WebGPURMSProp'`, next to TF.js's `'RMSProp'`, never in its place.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { ParamArena, RMSProp, type ResolvedOptions } from '../index.js';
import { webgpuBackend, type BackendAccess, type TfNamespace } from './backend-access.js';
import { bindVariables, Binding, gradientEntries, type BoundVariable, type VariableGradients } from './binding.js';
import {
  checkLearningRate, extrasBeyondTfjs, resolveTfjsConfig, tfjsConfigDict,
  type ResolvedTfjsConfig, type TfjsRMSPropConfig,
} from './config.js';
import { Engine } from './engine.js';
import {
  convertWeightValues, parseTfjsWeights, statesForVariables, tfjsSlots,
  type NamedValues, type ParsedWeights,
} from './weights.js';
import type { StateDtype } from '../index.js';

/** A tensor with a name, as TF.js's optimizers take and give their weights (tfjs-core's `NamedTensor`). */
type NamedTensor = { name: string; tensor: TF.Tensor };

/**
 * The class name the optimizer is saved under (`getClassName()`, a saved model's training config).
 *
 * @example
 * ```ts
 * tfjsRMSProp(tf).getClassName() === WEBGPU_RMSPROP_CLASS_NAME; // true: 'WebGPURMSProp'
 * ```
 */
export const WEBGPU_RMSPROP_CLASS_NAME = 'WebGPURMSProp';

/**
 * The optimizer `tfjsRMSProp` returns: a `tf.Optimizer` (`minimize`, `applyGradients`,
 * `getWeights`, `setWeights`, `dispose`, and `model.compile({ optimizer })`), plus what this
 * library adds.
 *
 * @example
 * ```ts
 * const optimizer: WebGPURMSProp = tfjsRMSProp(tf, { learningRate: 1e-3, skipNonFinite: true });
 * await model.fit(xs, ys, { epochs: 1 });
 * optimizer.learningRate /= 2; // from the next step on
 * console.log(await optimizer.skippedSteps());
 * ```
 */
export interface WebGPURMSProp extends TF.Optimizer {
  /** The learning rate; set it between steps (a finite number >= 0). Nothing is rebuilt. */
  learningRate: number;
  /** The rule's options, in this library's names (`lr`, `alpha`, `eps`, ...): TF.js's preset and the extras. */
  readonly options: ResolvedOptions;
  /**
   * Resolves once the GPU pipelines are compiled (off the calling thread). They start compiling when
   * the optimizer is made on TF.js's 'webgpu' backend; `await optimizer.ready()` before `fit` makes
   * sure that the first step compiles nothing. Rejects if the device cannot compile them.
   */
  ready(): Promise<void>;
  /**
   * How the first step found the pipelines: `'warm'` (compiled ahead, by `ready()`), `'compiled'`
   * (the step came first and compiled them itself, synchronously: the stall `ready()` avoids);
   * undefined before the first step.
   */
  readonly firstStep: 'warm' | 'compiled' | undefined;
  /** With skipNonFinite: how many steps were skipped (read from the GPU). 0 before the first step. */
  skippedSteps(): Promise<number>;
  /** With clipGradNorm or skipNonFinite: the global gradient norm of the last step (read from the GPU). */
  lastGradNorm(): Promise<number>;
  getConfig(): TF.serialization.ConfigDict;
}

/**
 * The optimizer's class for one TF.js: `new cls(config)` is `tfjsRMSProp(tf, config)` without the
 * fallback; `fromConfig` is what tfjs-layers calls to load a saved model's optimizer.
 *
 * @example
 * ```ts
 * const WebGPURMSPropClass: WebGPURMSPropClass = registerWebGPURMSProp(tf);
 * new WebGPURMSPropClass({ learningRate: 0.01 });
 * ```
 */
export interface WebGPURMSPropClass {
  new (config?: TfjsRMSPropConfig): WebGPURMSProp;
  /** {@link WEBGPU_RMSPROP_CLASS_NAME}: what `tf.serialization` registers it under. */
  readonly className: string;
}

/** The trained variables, their engine, and the backend they live on (set at the first step). */
interface Model {
  readonly access: BackendAccess;
  readonly binding: Binding;
  /** Undefined when every variable is empty. */
  readonly engine: Engine | undefined;
}

/** The pipelines compiled ahead of the first step, and whether that finished. */
interface WarmUp {
  readonly promise: Promise<void>;
  done: boolean;
}

/**
 * Compiles the pipelines of `options` on `device` off the calling thread (`RMSProp.create` over a
 * one-element arena, freed at once): they land in the core's per-device cache, where the engine the
 * first step builds finds them. A failure is kept for `ready()` to report; the step then compiles.
 */
function warmUp(device: GPUDevice, options: ResolvedOptions): WarmUp {
  const arena = new ParamArena(device, [{ name: 'warm-up', size: 1 }], 'WebGPURMSProp.warmUp');
  const warm: WarmUp = {
    done: false,
    promise: RMSProp.create(device, arena.specs(), options).then((optimizer) => {
      optimizer.destroy();
      warm.done = true;
    }).finally(() => arena.destroy()),
  };
  warm.promise.catch(() => undefined); // reported by ready(), not as an unhandled rejection
  return warm;
}

/** One class per TF.js core (keyed by its `Optimizer`): registering twice would replace TF.js's map entry. */
const classes = new WeakMap<object, WebGPURMSPropClass>();

/**
 * Defines the optimizer class for the caller's TF.js and registers it with `tf.serialization`
 * under `'WebGPURMSProp'` (once per TF.js; later calls return the same class). `tfjsRMSProp` calls
 * it; call it yourself before `tf.loadLayersModel` of a model saved with this optimizer.
 *
 * @example
 * ```ts
 * registerWebGPURMSProp(tf); // before loading a model saved with includeOptimizer
 * const model = await tf.loadLayersModel('indexeddb://my-model'); // its optimizer is a WebGPURMSProp again
 * ```
 */
export function registerWebGPURMSProp(tf: TfNamespace): WebGPURMSPropClass {
  checkNamespace(tf);
  const known = classes.get(tf.Optimizer);
  if (known) return known;
  const cls = defineClass(tf);
  type Registrable = TF.serialization.SerializableConstructor<TF.serialization.Serializable>;
  tf.serialization.registerClass(cls as unknown as Registrable);
  classes.set(tf.Optimizer, cls);
  return cls;
}

/**
 * An RMSProp `tf.Optimizer` for TF.js's WebGPU backend, with `tf.train.rmsprop`'s options and
 * defaults (`presets.tfjs`) and this library's extras: use it wherever TF.js takes an optimizer
 * (`model.compile`, `optimizer.minimize`). It runs on the backend's own GPUDevice, built at the first
 * step. Throws a TypeError when TF.js runs on another backend, unless `fallback: 'tfjs'`, which then
 * returns `tf.train.rmsprop(...)` with the same options.
 *
 * @param tf The caller's TF.js namespace (`import * as tf from '@tensorflow/tfjs'`, or tfjs-core).
 * @param config TF.js's names (`learningRate`, `decay`, `momentum`, `epsilon`, `centered`), extras, `fallback`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { tfjsRMSProp } from 'webgpu-rmsprop/tfjs';
 *
 * await tf.setBackend('webgpu');
 * const model = tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [4] })] });
 * model.compile({ optimizer: tfjsRMSProp(tf, { learningRate: 1e-3 }), loss: 'meanSquaredError' });
 * await model.fit(xs, ys, { epochs: 5 });
 * ```
 */
export function tfjsRMSProp(
  tf: TfNamespace, config: TfjsRMSPropConfig & { fallback: 'tfjs' },
): WebGPURMSProp | TF.RMSPropOptimizer;
export function tfjsRMSProp(tf: TfNamespace, config?: TfjsRMSPropConfig): WebGPURMSProp;
export function tfjsRMSProp(tf: TfNamespace, config: TfjsRMSPropConfig = {}): WebGPURMSProp | TF.RMSPropOptimizer {
  return create(tf, config);
}

function create(tf: TfNamespace, config: unknown): WebGPURMSProp | TF.RMSPropOptimizer {
  const cls = registerWebGPURMSProp(tf);
  const resolved = resolveTfjsConfig(config);
  const active = tf.engine().backendName as string | null | undefined;
  if (resolved.fallback === 'tfjs' && tf.getBackend() !== 'webgpu') {
    const extras = extrasBeyondTfjs(resolved);
    if (extras.length > 0) {
      throw new TypeError(`tfjsRMSProp: TF.js runs on '${tf.getBackend()}', so fallback: 'tfjs' would return ` +
        'tf.train.rmsprop, ' +
        `which has no ${extras.join(', ')}. Drop them, or run TF.js on its 'webgpu' backend.`);
    }
    const t = resolved.tfjs;
    return tf.train.rmsprop(t.learningRate, t.decay, t.momentum, t.epsilon, t.centered);
  }
  if (active && active !== 'webgpu') webgpuBackend(tf, 'tfjsRMSProp'); // throws, naming the fix
  return new cls(config as TfjsRMSPropConfig);
}

function checkNamespace(tf: TfNamespace): void {
  const t = tf as Partial<TfNamespace> | null | undefined;
  const needed = [
    'Optimizer', 'backend', 'getBackend', 'engine', 'serialization', 'train', 'tensor', 'variable', 'scalar', 'zerosLike',
  ] as const;
  const missing = needed
    .filter((key) => t?.[key] === undefined);
  if (typeof t !== 'object' || t === null || missing.length > 0) {
    throw new TypeError("tfjsRMSProp(tf): tf must be TF.js's namespace (import * as tf from '@tensorflow/tfjs' or " +
      "'@tensorflow/tfjs-core')" +
      (missing.length > 0 && typeof t === 'object' && t !== null ? `; this one lacks ${missing.join(', ')}.` : '.'));
  }
}

function defineClass(tf: TfNamespace): WebGPURMSPropClass {
  /** See {@link WebGPURMSProp}. */
  class WebGPURMSPropOptimizer extends tf.Optimizer implements WebGPURMSProp {
    static get className(): string {
      return WEBGPU_RMSPROP_CLASS_NAME;
    }

    readonly #config: ResolvedTfjsConfig;
    #lr: number;
    #model: Model | undefined;
    /** Weights given to setWeights before the first step (a loaded model's), applied when it builds. */
    #pending: ParsedWeights | undefined;
    /** What getWeights() returned, kept and updated in place, so that repeated saves leak nothing. */
    readonly #exported = new Map<string, TF.Variable>();
    #disposed = false;
    /** The pipelines' warm-up, started when the optimizer is made on TF.js's 'webgpu' backend. */
    #warm: WarmUp | undefined;
    #firstStep: 'warm' | 'compiled' | undefined;

    constructor(config?: TfjsRMSPropConfig) {
      super();
      this.#config = resolveTfjsConfig(config ?? {});
      this.#lr = this.#config.options.lr;
      if (tf.getBackend() === 'webgpu') {
        try {
          this.#warm = warmUp(webgpuBackend(tf, 'tfjsRMSProp').device, this.#config.options);
        } catch {
          // A backend this integration cannot use: the first step says so, naming the fix.
        }
      }
    }

    get learningRate(): number {
      return this.#lr;
    }

    set learningRate(value: number) {
      checkLearningRate(value, 'WebGPURMSProp.learningRate');
      this.#lr = value;
      if (this.#model?.engine) this.#model.engine.lr = value;
    }

    get options(): ResolvedOptions {
      return Object.freeze({ ...this.#config.options, lr: this.#lr });
    }

    override applyGradients(variableGradients: TF.NamedTensorMap | NamedTensor[]): void {
      const where = 'WebGPURMSProp.applyGradients';
      this.#checkUsable(where);
      const entries = gradientEntries(variableGradients as VariableGradients, where);
      const access = webgpuBackend(tf, where);
      const model = this.#model;
      if (model && model.access !== access) {
        throw new Error(`${where}: TF.js's WebGPU backend is not the one of the first step (it was removed and ` +
          "registered again?); the optimizer's state lives on the first one's device. Create a new optimizer " +
          '(and setWeights to carry the state over).');
      }
      // Everything is checked (variables, gradients, weights waiting to be loaded) before the first GPU object is made.
      const named = bindVariables(tf, entries.map(([name]) => name), where);
      const current = model?.binding;
      const joining = named.filter((v) => !current?.has(v.variable));
      const leftForGood = current?.variables.some((v) => v.variable.isDisposed) ?? false;
      if (model && joining.length > 0 && this.#config.options.biasCorrection) {
        throw new RangeError(`${where}: variable '${joining[0]!.name}' joins the variables this optimizer trains, ` +
          'and with biasCorrection its correction would start at the step count of the others, not at 1. ' +
          'Create the optimizer once every variable it trains is known (unfreeze first), or leave out biasCorrection.');
      }
      if (model && joining.length === 0 && !leftForGood) {
        const plan = model.binding.plan(tf, access, { tensors: model.engine?.tensors.length ?? 0 }, entries, where);
        if (model.engine) model.binding.run(tf, access, model.engine, plan, 'WebGPURMSProp');
      } else {
        this.#rebuild(access, model, joining, entries, where);
      }
      this.incrementIterations();
    }

    /**
     * A new binding and engine for the variables of `model` still alive, then those `joining`
     * (fresh state); each kept variable's state carried over on the GPU; then this step.
     */
    #rebuild(
      access: BackendAccess, model: Model | undefined, joining: readonly Omit<BoundVariable, 'tensor'>[],
      entries: readonly [string, TF.Tensor | undefined][], where: string,
    ): void {
      const kept = (model?.binding.variables ?? []).filter((v) => !v.variable.isDisposed);
      let next = 0;
      const bound: BoundVariable[] = [...kept, ...joining].map(({ name, variable, shape, size }) =>
        ({ name, variable, shape, size, tensor: size > 0 ? next++ : undefined }));
      const binding = new Binding(bound);
      const plan = binding.plan(tf, access, { tensors: next }, entries, where);
      const pending = model === undefined ? this.#pending : undefined;
      const states = pending ? statesForVariables(pending, bound, this.#config.options) : undefined;
      const nonEmpty = bound.filter((v) => v.tensor !== undefined);
      if (!model) this.#firstStep = this.#warm?.done ? 'warm' : 'compiled';
      const engine = nonEmpty.length > 0
        ? new Engine(access.device, nonEmpty.map((v) => ({ name: v.name, size: v.size })),
          { ...this.#config.options, lr: this.#lr }, 'WebGPURMSProp')
        : undefined;
      if (engine && model?.engine) {
        const pairs = kept.flatMap((v, i) => (v.tensor === undefined ? [] : [[v.tensor, bound[i]!.tensor!] as const]));
        engine.carryFrom(model.engine, pairs, 'WebGPURMSProp');
      }
      if (engine && states) {
        engine.loadState(pending!.iterations, states.filter((_, i) => bound[i]!.tensor !== undefined));
      }
      model?.engine?.destroy(); // after the carry's copies were submitted
      this.#pending = undefined;
      this.#model = { access, binding, engine };
      if (engine) binding.run(tf, access, engine, plan, 'WebGPURMSProp');
    }

    /**
     * Resolves once the GPU pipelines for this optimizer's options are compiled on TF.js's device
     * (`RMSProp.create`, off the calling thread): started when the optimizer is made on the 'webgpu'
     * backend, or by this call. A first step after it compiles nothing (`firstStep === 'warm'`).
     */
    ready(): Promise<void> {
      this.#checkUsable('WebGPURMSProp.ready');
      return (this.#warm ??= warmUp(webgpuBackend(tf, 'WebGPURMSProp.ready').device, this.#config.options)).promise;
    }

    get firstStep(): 'warm' | 'compiled' | undefined {
      return this.#firstStep;
    }

    override async getWeights(): Promise<NamedTensor[]> {
      this.#checkUsable('WebGPURMSProp.getWeights');
      const iterations = this.iterations;
      let slots: NamedValues[] = [];
      const model = this.#model;
      if (model) {
        const bound = model.binding.variables;
        const state = model.engine ? (await model.engine.stateDict()).tensors : [];
        const perVariable = bound.map((v) => (v.tensor === undefined ? undefined : state[v.tensor]));
        slots = tfjsSlots(bound, perVariable, this.#config.options);
      } else if (this.#pending) {
        slots = pendingSlots(this.#pending); // as TF.js: what setWeights loaded, before any step
      }
      return this.#export(iterations, slots);
    }

    /** Updates (or makes) the kept variables with these values; disposes those no longer named. */
    #export(iterations: number, slots: readonly NamedValues[]): NamedTensor[] {
      const out: NamedTensor[] = [{ name: 'iter', tensor: this.#keep('iter', tf.scalar(iterations, 'int32')) }];
      for (const s of slots) {
        const dtype = s.values instanceof Int32Array ? 'int32' : 'float32';
        out.push({ name: s.name, tensor: this.#keep(s.name, tf.tensor(s.values, [...s.shape], dtype)) });
      }
      const names = new Set(out.map((w) => w.name));
      for (const [name, v] of this.#exported) {
        if (!names.has(name)) {
          v.dispose();
          this.#exported.delete(name);
        }
      }
      return out;
    }

    #keep(name: string, value: TF.Tensor): TF.Variable {
      const kept = this.#exported.get(name);
      const same = kept !== undefined && kept.dtype === value.dtype && kept.shape.length === value.shape.length &&
        kept.shape.every((d, i) => d === value.shape[i]);
      if (kept && same) {
        kept.assign(value);
        value.dispose();
        return kept;
      }
      kept?.dispose();
      const v = tf.variable(value, false);
      value.dispose(); // the variable holds the data
      this.#exported.set(name, v);
      return v;
    }

    override async setWeights(weightValues: NamedTensor[]): Promise<void> {
      const where = 'WebGPURMSProp.setWeights';
      this.#checkUsable(where);
      if (!Array.isArray(weightValues)) {
        throw new TypeError(`${where}: pass what getWeights() returned, a list of { name, tensor }.`);
      }
      const named = await readWeightValues(weightValues, where);
      this.#checkUsable(where); // still usable after the reads
      const parsed = parseTfjsWeights(named, this.#config.options.centered, where);
      const model = this.#model;
      if (model) {
        const states = statesForVariables(parsed, model.binding.variables, this.#config.options, where);
        const onGpu = states.filter((_, i) => model.binding.variables[i]!.tensor !== undefined);
        model.engine?.loadState(parsed.iterations, onGpu);
      } else {
        this.#pending = parsed;
      }
      this.iterations_ = parsed.iterations;
    }

    override getConfig(): TF.serialization.ConfigDict {
      return tfjsConfigDict(this.#config, this.#lr);
    }

    static override fromConfig<T extends TF.serialization.Serializable>(
      _cls: TF.serialization.SerializableConstructor<T>, config: TF.serialization.ConfigDict): T {
      const { customObjects: _ignored, ...rest } = config as Record<string, unknown>;
      return create(tf, rest) as unknown as T;
    }

    async skippedSteps(): Promise<number> {
      this.#checkUsable('WebGPURMSProp.skippedSteps');
      return this.#model?.engine ? this.#model.engine.skippedSteps() : 0;
    }

    async lastGradNorm(): Promise<number> {
      this.#checkUsable('WebGPURMSProp.lastGradNorm');
      if (!(this.#config.options.clipGradNorm > 0 || this.#config.options.skipNonFinite)) {
        throw new Error('WebGPURMSProp.lastGradNorm() needs the gradient pre-pass: create the optimizer with ' +
          'clipGradNorm > 0 or skipNonFinite: true.');
      }
      return this.#model?.engine ? this.#model.engine.lastGradNorm() : 0;
    }

    /** Frees the GPU state, the arena and the tensors getWeights() returned. Safe to call twice. */
    override dispose(): void {
      if (this.#disposed) return;
      this.#disposed = true;
      this.#model?.engine?.destroy();
      this.#model = undefined;
      this.#pending = undefined;
      for (const v of this.#exported.values()) v.dispose();
      this.#exported.clear();
      super.dispose();
    }

    #checkUsable(where: string): void {
      if (this.#disposed) {
        throw new Error(`${where}: the optimizer was disposed. Create a new one with tfjsRMSProp(tf, config), ` +
          'and setWeights() to resume.');
      }
    }
  }
  return WebGPURMSPropOptimizer as unknown as WebGPURMSPropClass;
}

/** Weights waiting to be loaded, in TF.js's order (every rms, every momentum, every mg; then 8-bit state). */
function pendingSlots(pending: ParsedWeights): NamedValues[] {
  const v = pending.variables;
  return [
    ...v.map((x) => x.rms), ...v.map((x) => x.momentum), ...v.flatMap((x) => (x.mg ? [x.mg] : [])),
    ...v.flatMap((x) => (x.codes && x.absmax ? [x.codes, x.absmax] : [])),
  ];
}

/**
 * Reads `{ name, tensor }` weights to the CPU: the iteration count (any dtype), float32 slots, and
 * int32 8-bit codes (`<var>/rms/codes`, read as the int32 words they are).
 */
async function readWeightValues(weightValues: readonly NamedTensor[], where: string): Promise<NamedValues[]> {
  return Promise.all(weightValues.map(async (w, i): Promise<NamedValues> => {
    if (typeof w?.name !== 'string' || typeof w.tensor?.data !== 'function') {
      throw new TypeError(`${where}: entry ${i} must be { name, tensor }.`);
    }
    const codes = i > 0 && w.name.endsWith('/rms/codes');
    const dtype = codes ? 'int32' : 'float32';
    if (i > 0 && w.tensor.dtype !== dtype) {
      throw new TypeError(`${where}: '${w.name}' is ${w.tensor.dtype}; ` +
        (codes ? '8-bit codes are int32 (four a word), as getWeights() returns them.' : 'state slots are float32.'));
    }
    const data = await w.tensor.data();
    const values = codes ? Int32Array.from(data as Int32Array) : Float32Array.from(data);
    return { name: w.name, shape: [...w.tensor.shape], values };
  }));
}

/**
 * Converts an RMSProp's TF.js-form weights (what `getWeights()` returned, of this optimizer or of
 * `tf.train.rmsprop`) to the state dtype of the optimizer they will be loaded into, explicitly:
 * `'int8-blockwise'` quantizes the mean square (`/rms`) of each variable of 4096 elements or more as
 * an 8-bit step would store it, adding its `/rms/codes` and `/rms/absmax`; `'f32'` drops those (the
 * `/rms` values are their exact values). Returns new tensors (the caller disposes them); the given
 * weights are not changed. Throws a RangeError for a centered optimizer's weights to 8 bits.
 *
 * @example
 * ```ts
 * const saved = await f32Optimizer.getWeights();
 * const eightBit = tfjsRMSProp(tf, { stateDtype: 'int8-blockwise' });
 * await eightBit.setWeights(await convertTfjsWeights(tf, saved, 'int8-blockwise'));
 * ```
 */
export async function convertTfjsWeights(
  tf: TfNamespace, weights: readonly NamedTensor[], stateDtype: StateDtype,
): Promise<NamedTensor[]> {
  checkNamespace(tf);
  const where = 'convertTfjsWeights';
  if (!Array.isArray(weights)) {
    throw new TypeError(`${where}: pass what getWeights() returned, a list of { name, tensor }.`);
  }
  const converted = convertWeightValues(await readWeightValues(weights, where), stateDtype, where);
  return converted.map((w, i) => ({
    name: w.name,
    tensor: i === 0
      ? tf.tensor(w.values, [...w.shape], weights[0]!.tensor.dtype as 'int32' | 'float32')
      : tf.tensor(w.values, [...w.shape], w.values instanceof Int32Array ? 'int32' : 'float32'),
  }));
}
