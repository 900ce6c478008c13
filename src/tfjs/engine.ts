/**
 * The GPU side of the TF.js integration: one `ParamArena` holding a copy of every variable and its
 * gradient, and the `RMSProp` instances that step them.
 *
 * Two layouts, chosen by the options:
 * - `perTensor` (the default): one `RMSProp` per variable over its range of the arena, all recorded
 *   into one encoder. A variable without a gradient in a step is not stepped at all, so its value
 *   and its state stay exactly as they were, as in `tf.train.rmsprop`. One dispatch per variable.
 * - `whole` (with `clipGradNorm` or `skipNonFinite`, whose gradient norm and non-finite check span
 *   every variable): one `RMSProp` over the whole arena, one dispatch per step (plus the pre-pass).
 *   The public `RMSProp` cannot leave some of its tensors out of a step, so a step without a
 *   gradient for some variable is refused in this layout (README: "TF.js").
 */
import {
  ParamArena, RMSProp, type ArenaTensor, type ResolvedOptions, type RMSPropState, type TensorState,
} from '../index.js';

/** One variable the engine trains: its name (used in state and labels) and element count (> 0). */
export interface EngineTensor {
  readonly name: string;
  readonly size: number;
}

/** Which `RMSProp` layout an option set needs (see the file's comment). */
export function engineLayout(options: ResolvedOptions): 'perTensor' | 'whole' {
  return options.clipGradNorm > 0 || options.skipNonFinite ? 'whole' : 'perTensor';
}

/**
 * Why a step without a gradient for variable `name` cannot run in `layout`, or undefined when it can.
 *
 * @example
 * ```ts
 * missingGradientRefusal('perTensor', 'dense/bias'); // undefined: the variable is left as it is
 * ```
 */
export function missingGradientRefusal(layout: 'perTensor' | 'whole', name: string): string | undefined {
  if (layout === 'perTensor') return undefined;
  return `variable '${name}' has no gradient in this step, and with clipGradNorm or skipNonFinite the WebGPU RMSProp ` +
    'steps every variable together (its gradient norm spans them all), so it cannot leave one out as tf.train.rmsprop ' +
    "does. Pass tf.zerosLike(variable) as that variable's gradient to take it as zero, or leave clipGradNorm and " +
    'skipNonFinite off.';
}

/**
 * The arena and optimizers for a fixed list of variables.
 *
 * @example
 * ```ts
 * const engine = new Engine(device, [{ name: 'dense/kernel', size: 32 }], presets.tfjs, 'tfjsRMSProp');
 * const encoder = device.createCommandEncoder();
 * // copy the variable into engine.tensors[0].param and its gradient into .grad, then:
 * engine.step(encoder, [true]);
 * device.queue.submit([encoder.finish()]);
 * ```
 */
export class Engine {
  readonly device: GPUDevice;
  readonly layout: 'perTensor' | 'whole';
  readonly arena: ParamArena;
  /** Each variable's range of the arena, in the order given. */
  readonly tensors: readonly ArenaTensor[];
  /** perTensor: one optimizer per tensor; whole: one. */
  readonly #optimizers: readonly RMSProp[];
  #destroyed = false;

  constructor(device: GPUDevice, tensors: readonly EngineTensor[], options: ResolvedOptions, label: string) {
    this.device = device;
    this.layout = engineLayout(options);
    this.arena = new ParamArena(device, tensors, `${label}.arena`);
    this.tensors = this.arena.tensors;
    try {
      const specs = this.arena.specs();
      this.#optimizers = this.layout === 'whole'
        ? [new RMSProp(device, specs, options)]
        : specs.map((spec) => new RMSProp(device, [spec], options));
    } catch (error) {
      this.arena.destroy();
      throw error;
    }
  }

  /** The learning rate (every optimizer has the same). */
  get lr(): number {
    return this.#optimizers[0]!.lr;
  }

  set lr(value: number) {
    for (const o of this.#optimizers) o.lr = value;
  }

  /**
   * Records one step into `encoder`, after the caller's copies into the arena. `present[i]`: whether
   * tensor i has a gradient in this step. perTensor steps only those; whole needs every one (the
   * caller refuses a step that lacks one before any GPU work: {@link missingGradientRefusal}).
   */
  step(encoder: GPUCommandEncoder, present: readonly boolean[]): void {
    if (this.layout === 'whole') {
      if (present.some((p) => !p)) {
        throw new Error('Engine.step: the whole layout steps every tensor (the caller checks).');
      }
      this.#optimizers[0]!.step(encoder);
      return;
    }
    this.#optimizers.forEach((o, i) => { if (present[i]) o.step(encoder); });
  }

  /** The state of every tensor, in order, and the step count (of the first optimizer). */
  async stateDict(): Promise<{ step: number; tensors: TensorState[]; skippedSteps?: number }> {
    const states = await Promise.all(this.#optimizers.map((o) => o.stateDict()));
    const tensors = states.flatMap((s) => s.tensors);
    const skipped = states[0]!.skippedSteps;
    return { step: states[0]!.step, tensors, ...(skipped !== undefined ? { skippedSteps: skipped } : {}) };
  }

  /**
   * Loads every tensor's state (in order, as `stateDict()` gives them) and the step count. Checks
   * everything (through each optimizer's `loadStateDict`) before writing: a mismatch throws and
   * leaves every optimizer as it was.
   */
  loadState(step: number, tensors: readonly TensorState[]): void {
    const dicts: RMSPropState[] = this.layout === 'whole'
      ? [dictFor(this.#optimizers[0]!, step, tensors)]
      : this.#optimizers.map((o, i) => dictFor(o, step, [tensors[i]!]));
    // Loading checks before it writes; a failure part-way (not expected after the checks) would leave a mix.
    this.#optimizers.forEach((o, i) => o.loadStateDict(dicts[i]!));
  }

  /** With skipNonFinite: steps skipped so far; 0 otherwise. */
  skippedSteps(): Promise<number> {
    return this.#optimizers[0]!.skippedSteps();
  }

  /** With clipGradNorm or skipNonFinite: the global gradient norm of the last step. */
  lastGradNorm(): Promise<number> {
    return this.#optimizers[0]!.lastGradNorm();
  }

  /** Frees the optimizers' state and the arena. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const o of this.#optimizers) o.destroy();
    this.arena.destroy();
  }
}

function dictFor(optimizer: RMSProp, step: number, tensors: readonly TensorState[]): RMSPropState {
  return {
    step,
    groups: optimizer.groupOptions.map((options) => ({ options, params: tensors.map((_, i) => i) })),
    tensors: [...tensors],
  };
}
