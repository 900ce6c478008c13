/**
 * The TF.js variables an optimizer trains, tied to their ranges of the engine's arena, and one
 * training step over them: which copies it needs, and the order that keeps TF.js's data right.
 *
 * The arena holds the optimizer's copy of every variable. A step copies each variable's gradient
 * into the arena, the variable itself only when its data changed since the optimizer last wrote it
 * (the first step; `assign`, `setWeights`, `loadWeights`), steps, and copies the result back into
 * the variable's own GPU buffer. The write-back is in place only when that buffer is the
 * variable's alone; otherwise the variable is first given a new buffer of TF.js's, as `assign` does
 * in `tf.train.rmsprop`:
 * - the data is shared (reference count > 1: `tf.variable(t)`, `clone`, a `setWeights` that
 *   assigned another model's weights): the other tensors keep the old values;
 * - TF.js holds a CPU copy of it (`data()` / `dataSync()` read it), or a `data()` of it is in flight
 *   (TF.js caches what that read saw when it resolves): that copy would be stale, for good;
 * - it is on the CPU only (a fresh initializer) or on another backend: there is no buffer to write;
 * - it is the app's own buffer (`zeroCopy`), or lacks COPY_DST usage.
 * Copies from the old data are submitted before the variable lets go of it: TF.js may hand a
 * released buffer to its next kernel.
 */
import type * as TF from '@tensorflow/tfjs-core';
import type { BackendAccess, TensorStorage, TfNamespace } from './backend-access.js';
import { USAGE_COPY_BOTH } from './backend-access.js';
import type { Engine } from './engine.js';

/** A gradient as TF.js's optimizers receive it: a map by variable name, or a list of `{ name, tensor }`. */
export type VariableGradients = TF.NamedTensorMap | readonly { name: string; tensor?: TF.Tensor | null }[];

/** One variable the optimizer trains. */
export interface BoundVariable {
  readonly name: string;
  readonly variable: TF.Variable;
  readonly shape: readonly number[];
  readonly size: number;
  /** Its tensor in the engine (undefined for a variable with no elements, which needs no GPU work). */
  readonly tensor: number | undefined;
}

/** Where a copy reads from: a GPU buffer (from byte 0), or values on the CPU. */
type Source = { readonly buffer: GPUBuffer } | { readonly values: Float32Array };

/** What one step does for one variable with a gradient. */
interface VariableStep {
  readonly bound: BoundVariable;
  readonly tensor: number;
  /** Copy the variable into the arena first (its data changed since the optimizer last wrote it). */
  readonly copyIn?: Source;
  readonly grad: Source;
  /** Give the variable a new buffer before writing back (the cases in this file's comment). */
  readonly fresh: boolean;
  /** The buffer written in place when not fresh. */
  readonly target?: GPUBuffer;
}

/** One step, checked and planned; nothing has touched the GPU yet. */
export interface PlannedStep {
  readonly variables: readonly VariableStep[];
  /** Per engine tensor: whether it is stepped. */
  readonly present: readonly boolean[];
}

/** Gradients as a list of `[name, tensor or undefined]`, names checked. */
export function gradientEntries(gradients: VariableGradients, where: string): [string, TF.Tensor | undefined][] {
  if (gradients === null || typeof gradients !== 'object') {
    throw new TypeError(`${where}: pass a map { [variableName]: gradient } or a list of { name, tensor }, ` +
      `got ${String(gradients)}.`);
  }
  const entries: [string, TF.Tensor | undefined][] = Array.isArray(gradients)
    ? gradients.map((g, i) => {
        if (g === null || typeof g !== 'object' || typeof g.name !== 'string') {
          throw new TypeError(`${where}: entry ${i} must be { name, tensor }.`);
        }
        return [g.name, g.tensor ?? undefined];
      })
    : Object.entries(gradients as TF.NamedTensorMap).map(([name, t]) => [name, t ?? undefined]);
  const seen = new Set<string>();
  for (const [name] of entries) {
    if (seen.has(name)) throw new RangeError(`${where}: variable '${name}' is given twice.`);
    seen.add(name);
  }
  return entries;
}

/**
 * The variables of the first step, checked: each name a registered `tf.Variable` of dtype float32.
 * Throws a TypeError or RangeError naming the variable and the fix.
 */
export function bindVariables(
  tf: TfNamespace, names: readonly string[], where: string,
): Omit<BoundVariable, 'tensor'>[] {
  const registered = tf.engine().registeredVariables;
  return names.map((name) => {
    const variable = registered[name];
    if (!variable) {
      throw new RangeError(`${where}: no variable named '${name}' is registered with TF.js: gradients must be ` +
        "keyed by their variable's name.");
    }
    checkVariable(variable, name, where);
    return { name, variable, shape: [...variable.shape], size: variable.size };
  });
}

function checkVariable(variable: TF.Variable, name: string, where: string): void {
  if (variable.isDisposed) throw new RangeError(`${where}: variable '${name}' was disposed.`);
  if (variable.dtype !== 'float32') {
    throw new TypeError(`${where}: variable '${name}' is ${variable.dtype}; the WebGPU RMSProp trains float32 ` +
      "variables only. Leave it out of the variables you train (minimize's varList, trainable: false), or use " +
      "fallback: 'tfjs' / tf.train.rmsprop.");
  }
}

/**
 * The trained variables and what the optimizer last wrote into each: the data id it left there, so
 * that a step knows when TF.js replaced the data.
 *
 * @example
 * ```ts
 * const binding = new Binding(bound, 'applyGradients');
 * const plan = binding.plan(tf, access, engine, gradientEntries(grads, 'applyGradients'));
 * binding.run(tf, access, engine, plan); // copies in, steps, writes back
 * ```
 */
export class Binding {
  readonly variables: readonly BoundVariable[];
  readonly #byVariable: Map<TF.Variable, BoundVariable>;
  /** The data id each variable had when the optimizer last wrote it (undefined: never). */
  readonly #written = new Map<BoundVariable, object>();

  constructor(variables: readonly BoundVariable[]) {
    this.variables = variables;
    this.#byVariable = new Map(variables.map((v) => [v.variable, v]));
  }

  /** Whether `variable` is one of these (by identity: a new variable under an old name is another). */
  has(variable: TF.Variable): boolean {
    return this.#byVariable.has(variable);
  }

  /**
   * Checks a step's gradients and plans its copies. Every variable named must be one of these
   * (the optimizer rebuilds its binding first when the list grew). Throws, before any GPU work, for a
   * gradient of the wrong dtype or shape.
   */
  plan(
    tf: TfNamespace, access: BackendAccess, engine: { tensors: number },
    entries: readonly [string, TF.Tensor | undefined][], where: string,
  ): PlannedStep {
    const registered = tf.engine().registeredVariables;
    const present = new Array<boolean>(engine.tensors).fill(false);
    const steps: VariableStep[] = [];
    for (const [name, grad] of entries) {
      const bound = this.#byVariable.get(registered[name]!);
      if (!bound) throw new Error(`${where}: variable '${name}' is not bound (an internal error: please report it).`);
      checkVariable(bound.variable, name, where);
      if (grad === undefined) continue; // no gradient: the engine keeps it and its state as they are, as TF.js
      checkGradient(grad, bound, where);
      if (bound.tensor === undefined) continue; // no elements: nothing to do
      present[bound.tensor] = true;
      const bytes = bound.size * 4;
      const storage = access.storage(bound.variable);
      const changed = this.#written.get(bound) !== bound.variable.dataId;
      const fresh = storage.kind !== 'gpu' || storage.refCount !== 1 || storage.cached || storage.reading ||
        storage.external ||
        (storage.buffer.usage & USAGE_COPY_BOTH) !== USAGE_COPY_BOTH || storage.buffer.size < bytes;
      steps.push({
        bound,
        tensor: bound.tensor,
        ...(changed ? { copyIn: source(bound.variable, storage, bytes, `variable '${name}'`, where) } : {}),
        grad: source(grad, access.storage(grad), bytes, `the gradient of '${name}'`, where),
        fresh,
        ...(!fresh && storage.kind === 'gpu' ? { target: storage.buffer } : {}),
      });
    }
    return { variables: steps, present };
  }

  /**
   * Runs a planned step: submits TF.js's queued work, copies into the arena, steps, and writes each
   * variable back (giving it a new buffer first where the plan says). Returns once all is submitted.
   */
  run(tf: TfNamespace, access: BackendAccess, engine: Engine, plan: PlannedStep, label: string): void {
    const { device } = engine;
    if (plan.variables.length === 0) return;
    access.flush(); // TF.js's kernels that wrote the gradients (and any assigned value) go first
    const encoder = device.createCommandEncoder({ label: `${label}.step` });
    for (const s of plan.variables) {
      const t = engine.tensors[s.tensor]!;
      if (s.copyIn) copy(device, encoder, s.copyIn, t.param, t.size * 4);
      copy(device, encoder, s.grad, t.grad, t.size * 4);
    }
    const fresh = plan.variables.filter((s) => s.fresh);
    let targets: Map<VariableStep, GPUBuffer>;
    let commands = encoder;
    if (fresh.length > 0) {
      // The copies read the variables' old buffers: submitted before the variables let go of them.
      device.queue.submit([encoder.finish()]);
      targets = this.#giveNewBuffers(tf, access, fresh);
      access.flush(); // the new buffers' fill kernels go before the write-back
      commands = device.createCommandEncoder({ label: `${label}.step` });
    } else {
      targets = new Map();
    }
    engine.step(commands, plan.present);
    for (const s of plan.variables) {
      const t = engine.tensors[s.tensor]!;
      commands.copyBufferToBuffer(engine.arena.params, t.offset, targets.get(s) ?? s.target!, 0, t.size * 4);
    }
    device.queue.submit([commands.finish()]);
    for (const s of plan.variables) this.#written.set(s.bound, s.bound.variable.dataId);
  }

  /**
   * A new TF.js buffer for each variable that needs one: every new tensor is made and checked before
   * any variable is assigned, so that a failure leaves every variable with its data.
   */
  #giveNewBuffers(
    tf: TfNamespace, access: BackendAccess, steps: readonly VariableStep[],
  ): Map<VariableStep, GPUBuffer> {
    const made: { step: VariableStep; tensor: TF.Tensor; buffer: GPUBuffer }[] = [];
    try {
      for (const step of steps) {
        const tensor = tf.zerosLike(step.bound.variable); // a fill kernel: a buffer of TF.js's pool, on the GPU
        made.push({ step, tensor, buffer: undefined as unknown as GPUBuffer });
        const storage: TensorStorage = access.storage(tensor);
        if (storage.kind !== 'gpu' || storage.refCount !== 1 || storage.cached || storage.external ||
          (storage.buffer.usage & USAGE_COPY_BOTH) !== USAGE_COPY_BOTH || storage.buffer.size < step.bound.size * 4) {
          const why = storage.kind === 'gpu' ? `, ${storage.refCount} references, usage ${storage.buffer.usage}` : '';
          throw new Error(`WebGPU RMSProp: TF.js gave variable '${step.bound.name}' a new buffer that cannot be ` +
            `written (${storage.kind}${why}); ` +
            'the step was not taken and every variable keeps its value. Please report this with your TF.js version.');
        }
        made[made.length - 1]!.buffer = storage.buffer;
      }
    } catch (error) {
      for (const m of made) m.tensor.dispose();
      throw error;
    }
    const targets = new Map<VariableStep, GPUBuffer>();
    for (const m of made) {
      m.step.bound.variable.assign(m.tensor); // as tf.train.rmsprop's assign: the variable lets go of its old data
      m.tensor.dispose(); // the variable holds the new data now
      targets.set(m.step, m.buffer);
    }
    return targets;
  }
}

function checkGradient(grad: TF.Tensor, bound: BoundVariable, where: string): void {
  if (typeof grad !== 'object' || grad === null || typeof (grad as TF.Tensor).dataSync !== 'function') {
    throw new TypeError(`${where}: the gradient of '${bound.name}' must be a tf.Tensor, got ${String(grad)}.`);
  }
  if (grad.isDisposed) throw new RangeError(`${where}: the gradient of '${bound.name}' was disposed.`);
  if (grad.dtype !== 'float32') {
    throw new TypeError(`${where}: the gradient of '${bound.name}' is ${grad.dtype}; it must be float32.`);
  }
  if (grad.shape.length !== bound.shape.length || grad.shape.some((d, i) => d !== bound.shape[i])) {
    throw new RangeError(`${where}: the gradient of '${bound.name}' has shape [${grad.shape.join(', ')}], ` +
      `the variable [${bound.shape.join(', ')}].`);
  }
}

function source(tensor: TF.Tensor, storage: TensorStorage, bytes: number, what: string, where: string): Source {
  if (storage.kind === 'gpu') {
    if ((storage.buffer.usage & 0x04) === 0 || storage.buffer.size < bytes) {
      throw new TypeError(`${where}: ${what} lives in a GPUBuffer without COPY_SRC usage or too small ` +
        `(usage ${storage.buffer.usage}, ${storage.buffer.size} bytes for ${bytes}).`);
    }
    return { buffer: storage.buffer };
  }
  if (storage.kind === 'cpu') return { values: storage.values };
  // On another backend: read through TF.js (a tensor made before tf.setBackend('webgpu'), say).
  const values = tensor.dataSync();
  if (!(values instanceof Float32Array)) throw new TypeError(`${where}: ${what} did not read back as float32 values.`);
  return { values };
}

function copy(device: GPUDevice, encoder: GPUCommandEncoder, from: Source, to: GPUBufferBinding, bytes: number): void {
  if ('buffer' in from) encoder.copyBufferToBuffer(from.buffer, 0, to.buffer, to.offset ?? 0, bytes);
  else device.queue.writeBuffer(to.buffer, to.offset ?? 0, from.values.buffer, from.values.byteOffset, bytes);
}
