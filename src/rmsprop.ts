/**
 * The host class: a thin facade over the parts that each own one concern —
 * src/gpu/plan.ts (the layout, pure), src/state/state-store.ts (state buffers and their I/O),
 * src/gpu/update-pass.ts (the update's dispatches), src/gpu/grad-prepass.ts (clipping and non-finite
 * checks), src/gpu/step-values.ts (the per-step values' ring), src/gpu/keep-copies.ts (`step`'s `keep`)
 * and src/gpu/pipelines.ts (the cache).
 */
import { validateLr, type RMSPropConfig, type ResolvedOptions } from './rule/options.js';
import { scheduledLr, type LrSchedule } from './rule/schedules.js';
import { resolveParams, type ParamGroup, type ParamSpec, type ResolvedGroup } from './gpu/params.js';
import { hasMaster, planUpdate, stateSlots } from './gpu/plan.js';
import { copyStateSpans } from './state/carry.js';
import { usesBlockwise8 } from './rule/blockwise8.js';
import { countStepPipelineAsync, reducePipelinesAsync, stepPipelinesAsync } from './gpu/pipelines.js';
import { biasCorrectionFactor, decayFactorOf } from './rule/reference.js';
import { deviceLostError, watchDeviceLoss, type DeviceLossWatch } from './state/readback.js';
import { checkStateDict, type RMSPropState } from './state/state-dict.js';
import { StateStore } from './state/state-store.js';
import { UpdatePass } from './gpu/update-pass.js';
import { GradPrePass } from './gpu/grad-prepass.js';
import { GROUP_VALUES, StepValuesRing } from './gpu/step-values.js';
import { KeepCopies } from './gpu/keep-copies.js';
import { resolveKeep, type KeepTarget, type StepOptions } from './rule/step-options.js';

/** Descriptors of what every step records, made once (a step allocates nothing of its own). */
const PASS: GPUComputePassDescriptor = { label: 'RMSProp.step' };
const OWN_ENCODER: GPUCommandEncoderDescriptor = { label: 'RMSProp.step' };

/**
 * RMSProp on WebGPU. It trains the caller's own parameter buffers in place, from the caller's
 * gradient buffers, in one compute pass per step, with its state in buffers it owns: one dispatch
 * per tensor (per chunk of a tensor larger than a storage binding), or one for all the tensors of
 * a `ParamArena`.
 *
 * @example
 * ```ts
 * const optimizer = new RMSProp(device, [{ param: weights, grad: weightGrads, name: 'w' }], { lr: 1e-3 });
 * const encoder = device.createCommandEncoder();
 * // ... the app's forward and backward passes write weightGrads ...
 * optimizer.step(encoder);
 * device.queue.submit([encoder.finish()]);
 * const [w] = await optimizer.readParams();
 * ```
 */
export class RMSProp {
  /** The device the optimizer runs on. */
  readonly device: GPUDevice;
  readonly #groups: readonly ResolvedGroup[];
  readonly #store: StateStore;
  readonly #update: UpdatePass;
  /** The gradient pre-pass (skipNonFinite, clipGradNorm); absent when both are off. */
  readonly #prepass: GradPrePass | undefined;
  readonly #ring: StepValuesRing;
  /** `step(encoder, { keep })`: what keep is checked against, and the copies aside and back. */
  readonly #keepTargets: readonly KeepTarget[];
  readonly #keep: KeepCopies;
  readonly #lrs: number[];
  /** This step's learning rates while it is being prepared (committed to `#lrs` once it cannot fail). */
  readonly #nextLrs: Float64Array;
  /** Each group's lr schedule (undefined: a fixed lr); evaluated before every step. */
  readonly #schedules: (LrSchedule | undefined)[];
  readonly #submit: GPUCommandBuffer[] = [];
  #step = 0;
  /**
   * Steps recorded into a caller's encoder since the optimizer was made, mod 2^32: the steps the ring's
   * `ran` counters will have counted once they have all run (its `countStep` dispatch counts those; a
   * step the optimizer submits itself has run before any later `stateDict()` copies the state, and is
   * not counted); see `stateDict()`. And its value at the last `loadStateDict`.
   */
  #recorded = 0;
  #recordedAtLoad = 0;
  #destroyed = false;
  /** Set once the device is lost (one watch per device, shared). */
  readonly #loss: DeviceLossWatch;

  /**
   * Checks `params` and `options` (throwing before any GPU object is made), then allocates the state.
   * With 16-bit parameters and masterWeights, it also submits one pass that fills the f32 master copies
   * from the parameter buffers as they are then (after every write the queue had before).
   * Pipelines not yet made for this device are compiled here, synchronously; `RMSProp.create` makes
   * them asynchronously instead.
   *
   * @param device The device that owns the parameter and gradient buffers.
   * @param params `{ param, grad, name? }` per tensor, or param groups `{ params, ...options }`.
   * @param options Hyperparameters; PyTorch's defaults where missing. See `presets` for other frameworks.
   */
  constructor(device: GPUDevice, params: readonly ParamSpec[] | readonly ParamGroup[], options?: RMSPropConfig) {
    checkDevice(device);
    this.device = device;
    this.#groups = resolveParams(params, options, device.limits);
    this.#lrs = this.#groups.map((g) => g.options.lr);
    this.#nextLrs = new Float64Array(this.#groups.length);
    this.#schedules = this.#groups.map((g) => g.schedule);

    // Everything is checked: from here on GPU objects are made.
    this.#loss = watchDeviceLoss(device);
    const groupOptions = this.#groups.map((g) => g.options);
    const plans = planUpdate(this.#groups.flatMap((g) => g.params), groupOptions, device.limits);
    this.#store = new StateStore(device, this.#groups, plans);
    this.#update = new UpdatePass(device, plans, this.#store.chunks, groupOptions, this.#store.control);
    const o = groupOptions[0]!; // skipNonFinite and clipGradNorm are the same in every group
    const needsPrePass = o.skipNonFinite || o.clipGradNorm > 0;
    this.#prepass = needsPrePass
      ? new GradPrePass(device, plans.map((p) => p.segment), groupOptions, this.#store.control)
      : undefined;
    this.#ring = new StepValuesRing(device, this.#groups.length, 'RMSProp');
    const flat = this.#groups.flatMap((g) => g.params);
    this.#keepTargets = flat.map((p) => ({
      name: p.name, usage: p.param.buffer.usage, paramDtype: groupOptions[p.group]!.paramDtype,
    }));
    this.#keep = new KeepCopies(device, flat, this.#store);
    if (groupOptions.some(hasMaster)) this.#update.initMasters();
  }

  /**
   * The same optimizer as `new RMSProp(device, params, options)`, its pipelines compiled with
   * `createComputePipelineAsync`, so the calling thread never waits on a shader compiler (a stall on
   * D3D12 and Metal). The pipeline cache is the constructor's: an optimizer of a variant made before
   * compiles nothing. Rejects with the constructor's errors.
   *
   * @example
   * ```ts
   * const optimizer = await RMSProp.create(device, arena.specs(), { lr: 1e-3, clipGradNorm: 1 });
   * ```
   */
  static async create(
    device: GPUDevice,
    params: readonly ParamSpec[] | readonly ParamGroup[],
    options?: RMSPropConfig,
  ): Promise<RMSProp> {
    checkDevice(device);
    const groups = resolveParams(params, options, device.limits);
    const o = groups[0]!.options;
    const compiles: Promise<unknown>[] = groups.map((g) => stepPipelinesAsync(device, g.options));
    compiles.push(countStepPipelineAsync(device));
    if (o.skipNonFinite || o.clipGradNorm > 0) {
      for (const dtype of new Set(groups.map((g) => g.options.gradDtype))) {
        compiles.push(reducePipelinesAsync(device, dtype));
      }
      compiles.push(reducePipelinesAsync(device, 'f32')); // `finish`
    }
    await Promise.all(compiles);
    return new RMSProp(device, params, options);
  }

  /**
   * Steps taken: every `step()` call counts when it is made, whether the optimizer submits the step or
   * records it into your encoder (as PyTorch counts `optimizer.step()` calls, and skipped steps too).
   * An lr schedule and bias correction are evaluated at it. `stateDict().step` counts the steps in the
   * state it returns instead: the same number once every encoder a step was recorded into was
   * submitted before the `stateDict()` call.
   */
  get stepCount(): number {
    return this.#step;
  }

  /**
   * The learning rate (of the first param group; with a schedule, the value of the last step).
   * Setting it sets every group's and replaces any schedule; the new value reaches the GPU with the
   * next `step()`, and no pipeline is rebuilt.
   */
  get lr(): number {
    return this.#lrs[0]!;
  }

  /**
   * Sets every param group's learning rate to `value` and drops any schedule. Throws a TypeError
   * (not a number) or RangeError (NaN, ±Infinity or negative) before changing anything.
   *
   * @example
   * ```ts
   * optimizer.lr = optimizer.lr * 0.5; // halve the learning rate from the next step on
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
   * Dispatches one `step(encoder)` records, and compute passes (always 1): for tests and benchmarks.
   * The last dispatch counts the step for the ring of per-step values (src/gpu/step-values.ts);
   * `step()` without an encoder records one fewer.
   */
  get dispatchesPerStep(): { readonly dispatches: number; readonly passes: number } {
    return { dispatches: this.#update.dispatchCount + (this.#prepass?.dispatchCount ?? 0) + 1, passes: 1 };
  }

  /**
   * Records one RMSProp step. With `encoder`, it records a compute pass into it, after whatever
   * the caller recorded before (the backward pass that wrote the gradients), and the caller submits;
   * without, it submits a command buffer of its own.
   *
   * With skipNonFinite or clipGradNorm, the gradient pre-pass (shaders/grad-norm.wgsl) runs first in
   * the same compute pass. An lr schedule is evaluated here, at `stepCount` (skipped steps count).
   *
   * Each step runs with the hyperparameters it was recorded with (`lr`, a schedule's value, bias
   * correction's 1 - alpha^t), whatever the encoders and the order they are submitted in: a step
   * selects its values in a ring (src/gpu/step-values.ts) whose slots are reused only once the steps
   * recorded with them have run. A step whose values did not change writes nothing and allocates nothing.
   * Throws a RangeError, changing nothing, if more than about 16,000 steps with new values wait in
   * encoders not yet known to have run (see `settle()`).
   *
   * `options.keep` lists tensors to leave exactly as they are in this step, parameters and state
   * (see `StepOptions`): for a tensor that has no gradient this step. It adds two buffer copies (out
   * before the pass, back after it) per parameter range and per state slot of each kept tensor;
   * without it, nothing.
   */
  step(encoder?: GPUCommandEncoder, options?: StepOptions): void {
    this.#checkUsable('step()');
    if (encoder !== undefined &&
      (typeof encoder !== 'object' || encoder === null || typeof encoder.beginComputePass !== 'function')) {
      throw new TypeError(
        'step(encoder): encoder must be a GPUCommandEncoder, or left out to submit a command buffer of its own.',
      );
    }
    const keep = resolveKeep(options, this.#keepTargets, 'step()');
    this.#stageValues(); // a bad schedule value throws here, before anything changes
    this.#ring.prepare(encoder === undefined); // throws when no slot is free, before anything changes
    for (let g = 0; g < this.#lrs.length; g++) this.#lrs[g] = this.#nextLrs[g]!;
    const commands = encoder ?? this.device.createCommandEncoder(OWN_ENCODER);
    if (keep.length > 0) this.#keep.save(commands, keep);
    const pass = commands.beginComputePass(PASS);
    this.#prepass?.encode(pass); // first: the update's dispatches read what its `finish` wrote
    this.#update.encode(pass, this.#ring);
    this.#ring.encodeCount(pass); // last: the one dispatch of the step that writes the ring's counters
    pass.end();
    if (keep.length > 0) this.#keep.restore(commands);
    if (!encoder) {
      this.#submit[0] = commands.finish();
      this.device.queue.submit(this.#submit);
      this.#submit.length = 0;
    }
    this.#step++;
    if (encoder) this.#recorded = (this.#recorded + 1) >>> 0;
  }

  /** Writes this step's per-group values (lr, decay factor, bias correction) into the ring's `next`. */
  #stageValues(): void {
    const next = this.#ring.next;
    for (let g = 0; g < this.#groups.length; g++) {
      const o = this.#groups[g]!.options;
      const schedule = this.#schedules[g];
      const lr = schedule ? scheduledLr(schedule, g, this.#step, 'step()') : this.#lrs[g]!;
      this.#nextLrs[g] = lr;
      const at = g * GROUP_VALUES;
      next[at] = lr; // rounded to f32 once, here
      next[at + 1] = decayFactorOf(lr, o.weightDecay);
      next[at + 2] = o.biasCorrection ? biasCorrectionFactor(o.alpha, this.#step + 1) : 1;
    }
  }

  /**
   * Resolves once the slots held by steps that have run are free again: for a caller that records
   * thousands of steps with new hyperparameters (a schedule) into encoders before submitting them
   * and got step()'s RangeError. Submit those encoders first; then await this and go on.
   *
   * @example
   * ```ts
   * device.queue.submit(commandBuffers); // the encoders the steps were recorded into
   * await optimizer.settle();
   * ```
   */
  async settle(): Promise<void> {
    this.#checkUsable('settle()');
    await this.#ring.settle();
  }

  /**
   * Reads every parameter back, one Float32Array each, in the order given (groups flattened).
   * One snapshot, as `stateDict()`: it holds every step submitted before the call and none submitted
   * after (its copies are submitted before it returns its promise). The parameter buffers need COPY_SRC usage.
   * 16-bit parameters (paramDtype) come back decoded to f32 exactly; their master copies are in `stateDict()`.
   */
  async readParams(): Promise<Float32Array<ArrayBuffer>[]> {
    this.#checkUsable('readParams()');
    return this.#store.readParams();
  }

  /**
   * The optimizer state, copied to the CPU: step count, options and per-tensor state, in a form
   * `loadStateDict` restores bit for bit (on this optimizer, a new one, or the CPU `ReferenceRMSProp`).
   *
   * It is one step's state, however large: every state buffer is copied by one submission made when
   * it is called (before it returns its promise), so it holds every step submitted before the call and
   * none submitted after, even if you go on stepping while it is read. Its `step` counts the steps in
   * that state: `stepCount` at the call, less any step recorded into an encoder that had not been
   * submitted by then (the GPU counts the steps that ran, and that count is copied with the state).
   * Call it together with `readParams()`, in one expression, to get the parameters of the same step:
   *
   * @example
   * ```ts
   * const [state, params] = await Promise.all([optimizer.stateDict(), optimizer.readParams()]);
   * const bytes = stateDictToSafetensors(state, { params });
   * ```
   */
  async stateDict(): Promise<RMSPropState> {
    this.#checkUsable('stateDict()');
    const step = this.#step, recorded = this.#recorded, groups = this.groupOptions;
    const sinceLoad = (recorded - this.#recordedAtLoad) >>> 0;
    const counters = this.#ring.counters.map((buffer) => ({ buffer, offset: 0, size: buffer.size }));
    const withSkipped = this.#groups[0]!.options.skipNonFinite;
    const { tensors, skippedSteps, extra } = await this.#store.read(withSkipped, counters);
    let ran = 0;
    for (const c of extra) for (const n of new Uint32Array(c.buffer, c.byteOffset, c.length)) ran = (ran + n) >>> 0;
    // Steps recorded into encoders before the call that had not run when the state was copied: in
    // encoders submitted after it (or never). Those recorded before a loadStateDict are not in its step
    // count anyway. (Steps the optimizer submitted itself were submitted before this copy.)
    const notRun = Math.min((recorded - ran) >>> 0, sinceLoad);
    return {
      step: step - notRun,
      groups: groups.map((options, g) => ({ options, params: this.#groups[g]!.params.map((p) => p.index) })),
      tensors,
      ...(skippedSteps !== undefined ? { skippedSteps } : {}),
    };
  }

  /**
   * How many steps `skipNonFinite` has skipped so far (read from the GPU: it sees every step
   * submitted before the call). Steps applied = `stepCount - skippedSteps()` once every step recorded
   * was submitted before the call. 0 without skipNonFinite.
   *
   * @example
   * ```ts
   * const opt = new RMSProp(device, params, { skipNonFinite: true });
   * opt.step();
   * if (await opt.skippedSteps() > 0) console.warn('a step had a NaN or Inf gradient');
   * ```
   */
  async skippedSteps(): Promise<number> {
    this.#checkUsable('skippedSteps()');
    return (await this.#store.readControl('RMSProp.skippedSteps')).skipped;
  }

  /**
   * The global L2 norm of the gradients of the last step submitted (before clipping; NaN or Inf
   * if one was not finite), as `torch.nn.utils.clip_grad_norm_` returns it. Needs clipGradNorm or
   * skipNonFinite (the pre-pass that computes it); 0 before the first step.
   *
   * @example
   * ```ts
   * const opt = new RMSProp(device, params, { clipGradNorm: 1 });
   * opt.step();
   * console.log('gradient norm', await opt.lastGradNorm());
   * ```
   */
  async lastGradNorm(): Promise<number> {
    this.#checkUsable('lastGradNorm()');
    if (!this.#prepass) {
      throw new Error(
        'RMSProp.lastGradNorm() needs the gradient pre-pass: ' +
        'create the optimizer with clipGradNorm > 0 or skipNonFinite: true.',
      );
    }
    return (await this.#store.readControl('RMSProp.lastGradNorm')).norm;
  }

  /**
   * Restores a state from `stateDict()`: the step count, each group's lr, and every tensor's state.
   * The state must come from the same parameters (names and sizes) and options (lr aside);
   * otherwise it throws, and the optimizer stays as it was. With 16-bit parameters and masterWeights it
   * restores the f32 master copies; the 16-bit parameter buffers stay the caller's to restore (each step
   * overwrites them with the master's rounded values). Load it with no step waiting in an encoder you have
   * not submitted: the state is written through the queue, so such a step would run on the loaded state.
   */
  loadStateDict(state: RMSPropState): void {
    this.#checkUsable('loadStateDict()');
    const lrs = checkStateDict(state, { groups: this.#groups });
    this.#store.write(state);
    lrs.forEach((lr, g) => { this.#lrs[g] = lr; });
    this.#step = state.step;
    this.#recordedAtLoad = this.#recorded;
  }

  /**
   * Records into `encoder` copies of tensors' state from `source` (an optimizer on the same device
   * with the same options), and its step count and counters (skipped steps, last norm): `pairs` of
   * [source tensor, this tensor], of equal sizes and state layouts (all checked before the first copy
   * is recorded: a RangeError otherwise); 8-bit state copies its codes and absmax. For
   * webgpu-rmsprop/tfjs, which rebuilds its arena when the variable list changes; an optimizer's
   * tensors are fixed otherwise. No dispatch.
   *
   * @internal
   * @example
   * ```ts
   * const encoder = device.createCommandEncoder();
   * grown.copyStateFrom(encoder, old, [[0, 0], [1, 2]]); // tensor 1 is now tensor 2; tensor 1 is new
   * device.queue.submit([encoder.finish()]);
   * ```
   */
  copyStateFrom(encoder: GPUCommandEncoder, source: RMSProp, pairs: readonly (readonly [number, number])[]): void {
    this.#checkUsable('copyStateFrom()');
    source.#checkUsable('copyStateFrom()');
    // Every pair is checked before the first copy is recorded.
    const where = 'RMSProp.copyStateFrom()';
    const theirs = source.#groups.flatMap((g) => g.params), mine = this.#groups.flatMap((g) => g.params);
    const taken = new Set<number>();
    const copies = pairs.map(([from, to]) => {
      const a = Number.isInteger(from) ? theirs[from] : undefined, b = Number.isInteger(to) ? mine[to] : undefined;
      if (!a || !b) {
        throw new RangeError(`${where}: pair [${from}, ${to}] names no tensor (the source has ${theirs.length}, ` +
          `this optimizer ${mine.length}).`);
      }
      if (taken.has(to)) throw new RangeError(`${where}: tensor ${to} is the target of two pairs.`);
      taken.add(to);
      const oa = source.#groups[a.group]!.options, ob = this.#groups[b.group]!.options;
      const slots = stateSlots(ob), eightBit = usesBlockwise8(ob, b.size);
      if (a.size !== b.size || stateSlots(oa) !== slots || usesBlockwise8(oa, a.size) !== eightBit) {
        throw new RangeError(`${where}: pair [${from}, ${to}]: tensors of ${a.size} and ${b.size} elements, ` +
          `stateDtype '${oa.stateDtype}' and '${ob.stateDtype}': the state of one does not fit the other.`);
      }
      const spansA = source.#store.tensorStateSpans(from), spansB = this.#store.tensorStateSpans(to);
      // 8-bit state is copied buffer by buffer (codes, then absmax): the chunks must be laid out alike.
      const sizes = (spans: readonly { size: number }[]) => spans.map((x) => x.size).join();
      if (eightBit && sizes(spansA) !== sizes(spansB)) {
        throw new RangeError(`${where}: pair [${from}, ${to}]: the 8-bit state is split in chunks differently.`);
      }
      return { spansA, spansB, slots };
    });
    for (const { spansA, spansB, slots } of copies) copyStateSpans(encoder, spansA, spansB, slots);
    encoder.copyBufferToBuffer(source.#store.control, 0, this.#store.control, 0, this.#store.control.size);
    this.#step = source.#step;
  }

  /** Frees every buffer it created; the caller's buffers stay the caller's. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#store.destroy();
    this.#update.destroy();
    this.#prepass?.destroy();
    this.#ring.destroy();
    this.#keep.destroy();
  }

  #checkUsable(what: string): void {
    if (this.#destroyed) {
      throw new Error(`RMSProp.${what} after destroy(): create a new RMSProp (and loadStateDict to resume).`);
    }
    const lost = this.#loss.info;
    if (lost !== undefined) throw deviceLostError(`RMSProp.${what}`, lost);
  }
}

function checkDevice(device: unknown): asserts device is GPUDevice {
  if (typeof device !== 'object' || device === null || typeof (device as GPUDevice).createBuffer !== 'function') {
    throw new TypeError(
      'device must be a GPUDevice: get one with (await navigator.gpu.requestAdapter()).requestDevice().',
    );
  }
}
