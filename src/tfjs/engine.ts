/**
 * The GPU side of the TF.js integration: one `ParamArena` holding a copy of every variable and its
 * gradient, and one `RMSProp` over the whole arena: one dispatch a step (three with clipGradNorm or
 * skipNonFinite, whose gradient norm spans every variable).
 *
 * A variable without a gradient in a step has its range of the arena's gradients cleared (so that the
 * norm and the non-finite check leave it out, as PyTorch's clip_grad_norm_ leaves out a parameter
 * without .grad) and is kept (`RMSProp.step(encoder, { keep })`): its value and its state come out
 * of the step bit for bit as they went in, as in `tf.train.rmsprop`.
 */
import { ParamArena, RMSProp, type ArenaTensor, type ResolvedOptions, type RMSPropState, type TensorState } from '../index.js';

/** One variable the engine trains: its name (used in state and labels) and element count (> 0). */
export interface EngineTensor {
  readonly name: string;
  readonly size: number;
}

/**
 * The arena and the optimizer for one list of variables (a new list is a new engine, which
 * `carryFrom` the old one).
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
  readonly arena: ParamArena;
  /** Each variable's range of the arena, in the order given. */
  readonly tensors: readonly ArenaTensor[];
  readonly #optimizer: RMSProp;
  /** The tensors a step keeps (no gradient), reused from step to step. */
  readonly #keep: number[] = [];
  #destroyed = false;

  constructor(device: GPUDevice, tensors: readonly EngineTensor[], options: ResolvedOptions, label: string) {
    this.device = device;
    this.arena = new ParamArena(device, tensors, `${label}.arena`);
    this.tensors = this.arena.tensors;
    try {
      this.#optimizer = new RMSProp(device, this.arena.specs(), options);
    } catch (error) {
      this.arena.destroy();
      throw error;
    }
  }

  /** The learning rate. */
  get lr(): number {
    return this.#optimizer.lr;
  }

  set lr(value: number) {
    this.#optimizer.lr = value;
  }

  /**
   * Records one step into `encoder`, after the caller's copies into the arena. `present[i]`: whether
   * tensor i has a gradient in this step; one that has none is cleared and kept (see the file's comment).
   */
  step(encoder: GPUCommandEncoder, present: readonly boolean[]): void {
    const keep = this.#keep;
    keep.length = 0;
    for (let i = 0; i < this.tensors.length; i++) {
      if (present[i]) continue;
      const t = this.tensors[i]!;
      encoder.clearBuffer(this.arena.grads, t.offset, t.size * 4);
      keep.push(i);
    }
    this.#optimizer.step(encoder, keep.length > 0 ? { keep } : undefined);
  }

  /**
   * Takes the state of tensors of `old` (an engine of the same options on the same device), and its
   * step count and counters: `pairs` of [old tensor, this tensor]. The copies are submitted now,
   * before any step of this engine; `old` may be destroyed right after. No dispatch: one copy per
   * state slot of each pair (more where a chunk boundary splits a tensor), one for the counters.
   */
  carryFrom(old: Engine, pairs: readonly (readonly [number, number])[], label: string): void {
    const encoder = this.device.createCommandEncoder({ label: `${label}.carryState` });
    this.#optimizer.copyStateFrom(encoder, old.#optimizer, pairs);
    this.device.queue.submit([encoder.finish()]);
  }

  /** The state of every tensor, in order, and the step count. */
  async stateDict(): Promise<{ step: number; tensors: TensorState[]; skippedSteps?: number }> {
    const { step, tensors, skippedSteps } = await this.#optimizer.stateDict();
    return { step, tensors: [...tensors], ...(skippedSteps !== undefined ? { skippedSteps } : {}) };
  }

  /**
   * Loads every tensor's state (in order, as `stateDict()` gives them) and the step count. Checks
   * everything (`loadStateDict`) before writing: a mismatch throws and leaves the optimizer as it was.
   */
  loadState(step: number, tensors: readonly TensorState[]): void {
    this.#optimizer.loadStateDict(dictFor(this.#optimizer, step, tensors));
  }

  /** With skipNonFinite: steps skipped so far; 0 otherwise. */
  skippedSteps(): Promise<number> {
    return this.#optimizer.skippedSteps();
  }

  /** With clipGradNorm or skipNonFinite: the global gradient norm of the last step. */
  lastGradNorm(): Promise<number> {
    return this.#optimizer.lastGradNorm();
  }

  /** Frees the optimizer's state and the arena. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#optimizer.destroy();
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
