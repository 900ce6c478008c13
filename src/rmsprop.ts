/**
 * The host class: owns the optimizer state on the GPU, builds pipelines and bind groups once, and
 * records one compute pass per step.
 */
import { validateLr, type RMSPropConfig, type ResolvedOptions } from './options.js';
import { scheduledLrs, type LrSchedule } from './schedules.js';
import { resolveParams, type ParamGroup, type ParamSpec, type ResolvedGroup, type ResolvedParam } from './params.js';
import { dispatchSize, hasMaster, maxChunkElements, packedChunkElements, packedTail, planChunks, planSegments, stateSlots, type Chunk, type Segment } from './plan.js';
import { reducePipelines, stepPipelines } from './pipelines.js';
import { REDUCE_WORKGROUP_SIZE, stepHyper } from './reference.js';
import { checkReadable, deviceLostError, readRanges, watchDeviceLoss, type DeviceLossWatch } from './readback.js';
import { checkStateDict, type RMSPropState, type TensorState } from './state-dict.js';
import { decodeHalves } from './half.js';

// GPUBufferUsage flags, spelled out so that importing this module needs no WebGPU globals.
const STORAGE = 0x80, UNIFORM = 0x40, COPY_SRC = 0x04, COPY_DST = 0x08;

/** Steps with new hyperparameters that may be recorded before their command buffers are submitted. */
const HYPER_RING = 64;

/** Bytes of `struct Hyper` in shaders/rmsprop.wgsl: 6 f32, 4 u32, 2 f32, u32, f32, rounded up to 16. */
const HYPER_BYTES = 64;
/** Bytes of `struct Control` (shaders/rmsprop.wgsl, shaders/grad-norm.wgsl): bad, scale, norm, skipped. */
const CONTROL_BYTES = 16;
/** Bytes of `struct Unit` (4 u32, f32) and of `struct Finish` (3 words), rounded up to 16, in shaders/grad-norm.wgsl. */
const UNIT_BYTES = 32;
const FINISH_BYTES = 16;

interface ChunkState {
  readonly chunk: Chunk;
  /** v, then m if centered, then b with momentum: `chunk.slotStride` vec4s each. */
  readonly buffer: GPUBuffer;
}

/** A segment (one tensor, or a run of an arena's) with the state of each of its chunks. */
interface SegmentState {
  readonly segment: Segment;
  readonly chunks: readonly ChunkState[];
}

/** Where a tensor's elements live: its segment, and its first element there. */
interface Placement {
  readonly segment: SegmentState;
  readonly first: number;
}

interface Dispatch {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number];
}

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
  readonly #segments: readonly SegmentState[];
  /** Each tensor's place, by its index in the flattened parameter list. */
  readonly #placements: readonly Placement[];
  readonly #dispatches: readonly Dispatch[];
  /** The gradient pre-pass (skipNonFinite, clipGradNorm): partial norms per tensor, then `finish`; empty when off. */
  readonly #reduceDispatches: readonly Dispatch[];
  /** What the pre-pass found, read by the update (`struct Control`). */
  readonly #control: GPUBuffer;
  /** The pre-pass's per-workgroup partials and uniform slots (absent when off). */
  readonly #reduceBuffers: readonly GPUBuffer[];
  /** Whether a group needs a per-step uniform value (bias correction's 1 - alpha^t). */
  readonly #perStepHyper: boolean;
  /** Hyperparameters of every chunk, one uniform slot each, in chunk order: what the shaders read. */
  readonly #hyper: GPUBuffer;
  /**
   * HYPER_RING copies of `#hyper`'s contents. A step whose values changed writes the next copy with
   * queue.writeBuffer, and every step records a copy of its own values into `#hyper` ahead of its
   * pass, so each step runs with the values it was recorded with, in whatever encoder and order.
   */
  readonly #hyperRing: GPUBuffer;
  readonly #hyperData: ArrayBuffer;
  readonly #hyperStride: number;
  /** The ring slot holding the latest values (-1: none written yet). */
  #ringSlot = -1;
  /** Ring writes made for steps recorded into `#lastEncoder`. */
  #ringWritesInEncoder = 0;
  readonly #lrs: number[];
  /** Each group's lr schedule (undefined: a fixed lr); evaluated before every step. */
  readonly #schedules: (LrSchedule | undefined)[];
  #hyperDirty = true;
  #step = 0;
  #lastEncoder: GPUCommandEncoder | undefined;
  #destroyed = false;
  /** Set once the device is lost (one watch per device, shared). */
  readonly #loss: DeviceLossWatch;

  /**
   * Checks `params` and `options` (throwing before any GPU object is made), then allocates the state.
   * With 16-bit parameters and masterWeights, it also submits one pass that fills the f32 master copies
   * from the parameter buffers as they are then (after every write the queue had before).
   *
   * @param device The device that owns the parameter and gradient buffers.
   * @param params `{ param, grad, name? }` per tensor, or param groups `{ params, ...options }`.
   * @param options Hyperparameters; PyTorch's defaults where missing. See `presets` for other frameworks.
   */
  constructor(device: GPUDevice, params: readonly ParamSpec[] | readonly ParamGroup[], options?: RMSPropConfig) {
    if (typeof device !== 'object' || device === null || typeof device.createBuffer !== 'function') {
      throw new TypeError('device must be a GPUDevice: get one with (await navigator.gpu.requestAdapter()).requestDevice().');
    }
    this.device = device;
    this.#groups = resolveParams(params, options, device.limits);
    this.#lrs = this.#groups.map((g) => g.options.lr);
    this.#schedules = this.#groups.map((g) => g.schedule);
    const limits = device.limits;
    this.#hyperStride = Math.ceil(HYPER_BYTES / limits.minUniformBufferOffsetAlignment) * limits.minUniformBufferOffsetAlignment;

    // Everything is checked: from here on GPU objects are made.
    this.#loss = watchDeviceLoss(device);
    const resolved = this.#groups.flatMap((g) => g.params);
    this.#segments = planSegments(resolved).map((segment, s) => {
      const options = this.#groups[segment.group]!.options;
      const slots = stateSlots(options);
      const maxChunk = maxChunkElements(limits.maxStorageBufferBindingSize, limits.maxBufferSize, slots);
      const halves = options.gradDtype !== 'f32' || options.paramDtype !== 'f32'; // 16-bit bindings start at 256-byte offsets too
      const chunks = planChunks(segment.size, halves ? packedChunkElements(maxChunk) : maxChunk);
      const names = segment.members.length === 1 ? resolved[segment.members[0]!.index]!.name : `${segment.members.length} tensors`;
      return {
        segment,
        chunks: chunks.map((chunk, c) => ({
          chunk,
          buffer: this.#createState(`RMSProp.state[${s}]${chunks.length > 1 ? `.chunk[${c}]` : ''} (${names})`, chunk, slots, options),
        })),
      };
    });
    const placements: Placement[] = [];
    for (const segment of this.#segments) for (const m of segment.segment.members) placements[m.index] = { segment, first: m.first };
    this.#placements = placements;
    const chunkCount = this.#segments.reduce((n, s) => n + s.chunks.length, 0);
    this.#hyperData = new ArrayBuffer(chunkCount * this.#hyperStride);
    this.#hyper = device.createBuffer({ label: 'RMSProp.hyperparameters', size: this.#hyperData.byteLength, usage: UNIFORM | COPY_DST });
    this.#hyperRing = device.createBuffer({ label: 'RMSProp.hyperparameters.ring', size: this.#hyperData.byteLength * HYPER_RING, usage: COPY_SRC | COPY_DST });
    this.#perStepHyper = this.#groups.some((g) => g.options.biasCorrection);
    this.#control = device.createBuffer({ label: 'RMSProp.control', size: CONTROL_BYTES, usage: STORAGE | COPY_SRC | COPY_DST, mappedAtCreation: true });
    new Float32Array(this.#control.getMappedRange()).set([0, 1, 0, 0]); // bad 0, scale 1, norm 0, skipped 0 (0 in either type)
    this.#control.unmap();
    this.#dispatches = this.#createDispatches();
    if (this.#groups.some((g) => hasMaster(g.options))) this.#initMasters();
    const o = this.#groups[0]!.options; // skipNonFinite and clipGradNorm are the same in every group
    const reduce = o.skipNonFinite || o.clipGradNorm > 0 ? this.#createReduceDispatches(resolved, o) : { dispatches: [], buffers: [] };
    this.#reduceDispatches = reduce.dispatches;
    this.#reduceBuffers = reduce.buffers;
  }

  #createState(label: string, chunk: Chunk, slots: number, o: ResolvedOptions): GPUBuffer {
    const initialize = o.initialScale !== 0;
    const buffer = this.device.createBuffer({
      label,
      size: slots * chunk.slotStride * 16,
      usage: STORAGE | COPY_SRC | COPY_DST,
      mappedAtCreation: initialize,
    });
    if (initialize) {
      new Float32Array(buffer.getMappedRange(0, chunk.slotStride * 16)).fill(o.initialScale); // the v slot
      buffer.unmap();
    }
    return buffer;
  }

  #createDispatches(): Dispatch[] {
    const dispatches: Dispatch[] = [];
    const maxPerDimension = this.device.limits.maxComputeWorkgroupsPerDimension;
    let slot = 0;
    this.#segments.forEach(({ segment, chunks }, s) => {
      const options = this.#groups[segment.group]!.options;
      const pipelines = stepPipelines(this.device, options);
      const packed = options.gradDtype !== 'f32'; // 16-bit gradients: bindings 7 and 8, 2 bytes per element
      const halfParams = options.paramDtype !== 'f32'; // 16-bit parameters: bindings 9 and 10
      for (const { chunk, buffer: state } of chunks) {
        const hyper = { binding: 0, resource: { buffer: this.#hyper, offset: slot++ * this.#hyperStride, size: HYPER_BYTES } };
        const stateEntry = { binding: 3, resource: { buffer: state } };
        const controlEntry = { binding: 6, resource: { buffer: this.#control } };
        const at = segment.param.offset + chunk.first * 4, gradAt = segment.grad.offset + chunk.first * (packed ? 2 : 4);
        const label = `RMSProp.bindGroup[${s}]${chunks.length > 1 ? `.chunk[${chunk.first}]` : ''}`;
        if (chunk.count4 > 0) {
          const bodyBytes = chunk.count4 * 16;
          dispatches.push({
            pipeline: pipelines.body,
            workgroups: dispatchSize(chunk.count4, maxPerDimension),
            bindGroup: this.device.createBindGroup({
              label: `${label}.body`,
              layout: pipelines.body.getBindGroupLayout(0),
              entries: [
                hyper,
                halfParams ? halfParamBindings(segment, chunk).body : { binding: 1, resource: { buffer: segment.param.buffer, offset: at, size: bodyBytes } },
                packed
                  ? { binding: 7, resource: { buffer: segment.grad.buffer, offset: gradAt, size: bodyBytes / 2 } }
                  : { binding: 2, resource: { buffer: segment.grad.buffer, offset: gradAt, size: bodyBytes } },
                stateEntry,
                controlEntry,
              ],
            }),
          });
        }
        if (chunk.tailCount > 0) {
          const tailBytes = chunk.count * 4 - chunk.tailBindingOffset;
          dispatches.push({
            pipeline: pipelines.tail,
            workgroups: [1, 1],
            bindGroup: this.device.createBindGroup({
              label: `${label}.tail`,
              layout: pipelines.tail.getBindGroupLayout(0),
              entries: [
                hyper,
                stateEntry,
                halfParams ? halfParamBindings(segment, chunk).tail : { binding: 4, resource: { buffer: segment.param.buffer, offset: at + chunk.tailBindingOffset, size: tailBytes } },
                packed
                  ? { binding: 8, resource: { buffer: segment.grad.buffer, offset: gradAt + packedTail(chunk).bindingOffset, size: wordBytes(chunk.count * 2 - packedTail(chunk).bindingOffset) } }
                  : { binding: 5, resource: { buffer: segment.grad.buffer, offset: gradAt + chunk.tailBindingOffset, size: tailBytes } },
                controlEntry,
              ],
            }),
          });
        }
      }
    });
    return dispatches;
  }

  /**
   * Fills the master copies (masterWeights) from the caller's 16-bit parameters, on the GPU: one pass,
   * submitted now, so it reads what the queue had written to them before the optimizer was made.
   * The uniform is staged as the first step's (that step stages its own values again only if they change).
   */
  #initMasters(): void {
    this.#writeHyper();
    const encoder = this.device.createCommandEncoder({ label: 'RMSProp.initMaster' });
    const bytes = this.#hyperData.byteLength;
    encoder.copyBufferToBuffer(this.#hyperRing, this.#ringSlot * bytes, this.#hyper, 0, bytes);
    const pass = encoder.beginComputePass({ label: 'RMSProp.initMaster' });
    const maxPerDimension = this.device.limits.maxComputeWorkgroupsPerDimension;
    let slot = 0;
    this.#segments.forEach(({ segment, chunks }, s) => {
      const options = this.#groups[segment.group]!.options;
      const init = stepPipelines(this.device, options).initMaster;
      for (const { chunk, buffer: state } of chunks) {
        const hyper = { binding: 0, resource: { buffer: this.#hyper, offset: slot++ * this.#hyperStride, size: HYPER_BYTES } };
        if (!init) continue;
        const bindings = halfParamBindings(segment, chunk);
        const parts = [
          { pipeline: init.body, binding: bindings.body, count: chunk.count4, part: 'body' },
          { pipeline: init.tail, binding: bindings.tail, count: chunk.tailCount, part: 'tail' },
        ];
        for (const { pipeline, binding, count, part } of parts) {
          if (count === 0) continue;
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, this.device.createBindGroup({
            label: `RMSProp.initMaster.bindGroup[${s}]${chunks.length > 1 ? `.chunk[${chunk.first}]` : ''}.${part}`,
            layout: pipeline.getBindGroupLayout(0),
            entries: [hyper, { binding: 3, resource: { buffer: state } }, binding],
          }));
          const [x, y] = part === 'body' ? dispatchSize(count, maxPerDimension) : [1, 1];
          pass.dispatchWorkgroups(x, y);
        }
      }
    });
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  /**
   * The gradient pre-pass: per tensor (in the flattened order, which src/reference.ts
   * `gradNormStats` follows), one `partialNorms` dispatch per piece, pieces being whole workgroups
   * long, so cutting a tensor changes no sum; then one `finish`. Its uniforms never change: written once here.
   */
  #createReduceDispatches(params: readonly ResolvedParam[], o: ResolvedOptions): { dispatches: Dispatch[]; buffers: GPUBuffer[] } {
    const { device } = this;
    const limits = device.limits;
    const perGroup = REDUCE_WORKGROUP_SIZE * 4; // elements per workgroup
    // One workgroup per 1024 elements, in a 1-D grid: a 2-D grid's spare workgroups would add partials.
    const maxPiece = Math.floor(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize, limits.maxComputeWorkgroupsPerDimension * perGroup * 4) / 4 / perGroup) * perGroup;
    const units: { param: ResolvedParam; piece: Chunk; groups: number; firstPartial: number; packed: boolean }[] = [];
    let partialCount = 0;
    for (const param of params) {
      for (const piece of planChunks(param.size, maxPiece)) {
        const groups = Math.ceil((piece.count4 + (piece.tailCount > 0 ? 1 : 0)) / REDUCE_WORKGROUP_SIZE);
        units.push({ param, piece, groups, firstPartial: partialCount, packed: this.#groups[param.group]!.options.gradDtype !== 'f32' });
        partialCount += groups;
      }
    }
    const stride = Math.ceil(UNIT_BYTES / limits.minUniformBufferOffsetAlignment) * limits.minUniformBufferOffsetAlignment;
    const uniforms = device.createBuffer({ label: 'RMSProp.gradNorm.uniforms', size: stride * (units.length + 1), usage: UNIFORM, mappedAtCreation: true });
    const mapped = uniforms.getMappedRange();
    const unscale = Math.fround(1 / o.lossScale); // as stepHyper rounds it
    units.forEach((u, i) => {
      new Uint32Array(mapped, i * stride, 4).set([u.piece.count4, u.packed ? packedTail(u.piece).start : u.piece.tailStart, u.piece.tailCount, u.firstPartial]);
      new Float32Array(mapped, i * stride + 16, 1)[0] = unscale;
    });
    const finishAt = units.length * stride;
    new Uint32Array(mapped, finishAt, 3).set([partialCount, 0, Number(o.skipNonFinite)]);
    new Float32Array(mapped, finishAt + 4, 1)[0] = o.clipGradNorm;
    uniforms.unmap();
    const partials = device.createBuffer({ label: 'RMSProp.gradNorm.partials', size: partialCount * 8, usage: STORAGE });
    const partialsEntry = { binding: 3, resource: { buffer: partials } };
    const dispatches: Dispatch[] = units.map(({ param, piece, groups, packed }, i) => {
      const pipelines = reducePipelines(device, this.#groups[param.group]!.options.gradDtype);
      const bytes = packed ? 2 : 4; // per gradient element
      const at = param.grad.offset + piece.first * bytes;
      const tailAt = packed ? packedTail(piece).bindingOffset : piece.tailBindingOffset;
      const body = piece.count4 > 0
        ? { buffer: param.grad.buffer, offset: at, size: piece.count4 * 4 * bytes }
        : { buffer: this.#control, offset: 0, size: CONTROL_BYTES }; // unread (count4 is 0), but a binding is needed
      const tail = piece.tailCount > 0
        ? { buffer: param.grad.buffer, offset: at + tailAt, size: wordBytes(piece.count * bytes - tailAt) }
        : body; // unread (tailCount is 0)
      return {
        pipeline: pipelines.partials,
        workgroups: [groups, 1] as const,
        bindGroup: device.createBindGroup({
          label: `RMSProp.gradNorm.bindGroup[${param.index}]${piece.first > 0 ? `.piece[${piece.first}]` : ''} (${param.name})`,
          layout: pipelines.partials.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: uniforms, offset: i * stride, size: UNIT_BYTES } },
            { binding: packed ? 6 : 1, resource: body },
            { binding: packed ? 7 : 2, resource: tail },
            partialsEntry,
          ],
        }),
      };
    });
    const { finish } = reducePipelines(device);
    dispatches.push({
      pipeline: finish,
      workgroups: [1, 1],
      bindGroup: device.createBindGroup({
        label: 'RMSProp.gradNorm.bindGroup.finish',
        layout: finish.getBindGroupLayout(0),
        entries: [
          partialsEntry,
          { binding: 4, resource: { buffer: this.#control } },
          { binding: 5, resource: { buffer: uniforms, offset: finishAt, size: FINISH_BYTES } },
        ],
      }),
    });
    return { dispatches, buffers: [uniforms, partials] };
  }

  /**
   * Calls `visit` for each piece of tensor `index` that lies in one chunk: the chunk, the piece's
   * first element within the chunk and within the tensor, and its length.
   */
  #forEachPiece(index: number, size: number, visit: (c: ChunkState, inChunk: number, inTensor: number, count: number) => void): void {
    const { segment, first } = this.#placements[index]!;
    for (const c of segment.chunks) {
      const start = Math.max(first, c.chunk.first), end = Math.min(first + size, c.chunk.first + c.chunk.count);
      if (start < end) visit(c, start - c.chunk.first, start - first, end - start);
    }
  }

  /** Steps taken so far (steps recorded into a caller's encoder count when recorded). */
  get stepCount(): number {
    return this.#step;
  }

  /**
   * The learning rate (of the first param group; with a schedule, the value of the last step).
   * Setting it sets every group's and replaces any schedule; the new value is written to the GPU at
   * the next `step()`, and no pipeline is rebuilt.
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
    this.#hyperDirty = true;
  }

  /** The options of each param group, with their current learning rates. */
  get groupOptions(): ResolvedOptions[] {
    return this.#groups.map((g, i) => Object.freeze({ ...g.options, lr: this.#lrs[i]! }));
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
   * correction's 1 - alpha^t), even when several steps go into one encoder or encoders are submitted
   * out of order: new values are staged in a ring of HYPER_RING slots (queue.writeBuffer) and copied
   * into the uniform by a command recorded ahead of the step's pass. So at most HYPER_RING steps with
   * new values may be recorded before their command buffers are submitted; more into one encoder throws.
   */
  step(encoder?: GPUCommandEncoder): void {
    this.#checkUsable('step()');
    if (encoder !== undefined && (typeof encoder !== 'object' || encoder === null || typeof encoder.beginComputePass !== 'function')) {
      throw new TypeError('step(encoder): encoder must be a GPUCommandEncoder, or left out to submit a command buffer of its own.');
    }
    // Schedules first: a bad value throws here, before anything changes.
    const lrs = scheduledLrs(this.#schedules, this.#lrs, this.#step, 'step()');
    const lrChanged = lrs !== undefined && lrs.some((lr, g) => lr !== this.#lrs[g]);
    const writes = this.#hyperDirty || lrChanged || this.#perStepHyper || this.#ringSlot < 0;
    const sameEncoder = encoder !== undefined && encoder === this.#lastEncoder;
    if (writes && sameEncoder && this.#ringWritesInEncoder >= HYPER_RING) {
      throw new RangeError(`step(encoder): ${HYPER_RING} steps with new hyperparameters (lr, a schedule, biasCorrection) are already recorded into this encoder, as many as the optimizer can stage: submit it before recording more.`);
    }
    if (lrChanged) {
      lrs.forEach((lr, g) => { this.#lrs[g] = lr; });
      this.#hyperDirty = true;
    }
    if (writes) this.#writeHyper();
    this.#ringWritesInEncoder = (sameEncoder ? this.#ringWritesInEncoder : 0) + (writes ? 1 : 0);
    const commands = encoder ?? this.device.createCommandEncoder({ label: 'RMSProp.step' });
    const bytes = this.#hyperData.byteLength;
    commands.copyBufferToBuffer(this.#hyperRing, this.#ringSlot * bytes, this.#hyper, 0, bytes);
    const pass = commands.beginComputePass({ label: 'RMSProp.step' });
    let pipeline: GPUComputePipeline | undefined;
    // The pre-pass first (when on): the update's dispatches read what its `finish` wrote.
    for (const list of [this.#reduceDispatches, this.#dispatches]) {
      for (const d of list) {
        if (d.pipeline !== pipeline) pass.setPipeline((pipeline = d.pipeline));
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1]);
      }
    }
    pass.end();
    if (!encoder) this.device.queue.submit([commands.finish()]);
    this.#lastEncoder = encoder;
    this.#step++;
  }

  /** Stages the current hyperparameters of every chunk in the next ring slot. */
  #writeHyper(): void {
    const f32 = new Float32Array(this.#hyperData), u32 = new Uint32Array(this.#hyperData);
    const groups = this.groupOptions;
    // The same per-step values as the CPU twin computes (1 - lr*wd, 1 - alpha^t), from one function.
    const perStep = groups.map((o) => stepHyper(o, { step: this.#step + 1 }));
    let at = 0;
    for (const { segment, chunks } of this.#segments) {
      const o = groups[segment.group]!, h = perStep[segment.group]!;
      for (const { chunk } of chunks) {
        f32.set([o.lr, o.alpha, 1 - o.alpha, o.eps, o.momentum, o.weightDecay], at);
        u32.set([chunk.count4, chunk.slotStride, chunk.tailStart, chunk.tailCount], at + 6);
        f32.set([h.decayFactor, h.biasCorrection], at + 10);
        u32[at + 12] = packedTail(chunk).start;
        f32[at + 13] = h.unscale;
        at += this.#hyperStride / 4;
      }
    }
    this.#ringSlot = (this.#ringSlot + 1) % HYPER_RING;
    this.device.queue.writeBuffer(this.#hyperRing, this.#ringSlot * this.#hyperData.byteLength, this.#hyperData);
    this.#hyperDirty = false;
  }

  /**
   * Reads every parameter back, one Float32Array each, in the order given (groups flattened).
   * It sees every step submitted before the call. The parameter buffers need COPY_SRC usage.
   * 16-bit parameters (paramDtype) come back decoded to f32 exactly; their master copies are in `stateDict()`.
   */
  async readParams(): Promise<Float32Array<ArrayBuffer>[]> {
    this.#checkUsable('readParams()');
    const params = this.#groups.flatMap((g) => g.params);
    params.forEach((p) => checkReadable(p.param, `readParams(): '${p.name}'.param`));
    // 16-bit parameters are read as whole words (the buffer holds an odd count's last one) and decoded.
    const ranges = params.map((p) => ({ ...p.param, size: Math.ceil(p.param.size / 4) * 4 }));
    const raw = await readRanges(this.device, ranges, 'RMSProp.readParams');
    return raw.map((values, i) => {
      const dtype = this.#groups[params[i]!.group]!.options.paramDtype;
      if (dtype === 'f32') return values;
      const n = params[i]!.size;
      return decodeHalves(new Uint16Array(values.buffer, values.byteOffset, n), dtype, new Float32Array(n));
    });
  }

  /**
   * The optimizer state, copied to the CPU: step count, options and per-tensor state, in a form
   * `loadStateDict` restores bit for bit (on this optimizer, a new one, or the CPU `ReferenceRMSProp`).
   */
  async stateDict(): Promise<RMSPropState> {
    this.#checkUsable('stateDict()');
    const step = this.#step, groups = this.groupOptions;
    const chunks = this.#segments.flatMap((s) => s.chunks);
    const skip = this.#groups[0]!.options.skipNonFinite;
    const ranges = chunks.map((c) => ({ buffer: c.buffer, offset: 0, size: c.buffer.size }));
    if (skip) ranges.push({ buffer: this.#control, offset: 0, size: CONTROL_BYTES });
    const raw = await readRanges(this.device, ranges, 'RMSProp.stateDict');
    const skippedSteps = skip ? new Uint32Array(raw[chunks.length]!.buffer, raw[chunks.length]!.byteOffset, 4)[3]! : undefined;
    const data = new Map(chunks.map((c, i) => [c, raw[i]!]));
    const tensors = this.#groups.flatMap((group) => group.params.map((param): TensorState => {
      const o = group.options;
      const slotData = (slot: number) => {
        const out = new Float32Array(param.size);
        this.#forEachPiece(param.index, param.size, (c, inChunk, inTensor, count) => {
          const start = slot * c.chunk.slotStride * 4 + inChunk;
          out.set(data.get(c)!.subarray(start, start + count), inTensor);
        });
        return out;
      };
      return {
        name: param.name,
        size: param.size,
        squareAvg: slotData(0),
        ...(o.centered ? { gradAvg: slotData(1) } : {}),
        ...(o.momentum > 0 ? { momentumBuffer: slotData(o.centered ? 2 : 1) } : {}),
        ...(hasMaster(o) ? { master: slotData(stateSlots(o) - 1) } : {}),
      };
    }));
    return {
      step,
      groups: groups.map((options, g) => ({ options, params: this.#groups[g]!.params.map((p) => p.index) })),
      tensors,
      ...(skippedSteps !== undefined ? { skippedSteps } : {}),
    };
  }

  /**
   * How many steps `skipNonFinite` has skipped so far (read from the GPU: it sees every step
   * submitted before the call). Steps applied = `stepCount - skippedSteps()`. 0 without skipNonFinite.
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
    const [raw] = await readRanges(this.device, [{ buffer: this.#control, offset: 0, size: CONTROL_BYTES }], 'RMSProp.skippedSteps');
    return new Uint32Array(raw!.buffer, raw!.byteOffset, 4)[3]!;
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
    if (this.#reduceDispatches.length === 0) {
      throw new Error('RMSProp.lastGradNorm() needs the gradient pre-pass: create the optimizer with clipGradNorm > 0 or skipNonFinite: true.');
    }
    const [raw] = await readRanges(this.device, [{ buffer: this.#control, offset: 0, size: CONTROL_BYTES }], 'RMSProp.lastGradNorm');
    return raw![2]!;
  }

  /**
   * Restores a state from `stateDict()`: the step count, each group's lr, and every tensor's state.
   * The state must come from the same parameters (names and sizes) and options (lr aside);
   * otherwise it throws, and the optimizer stays as it was. With 16-bit parameters and masterWeights it
   * restores the f32 master copies; the 16-bit parameter buffers stay the caller's to restore (each step
   * overwrites them with the master's rounded values).
   */
  loadStateDict(state: RMSPropState): void {
    this.#checkUsable('loadStateDict()');
    const lrs = checkStateDict(state, { groups: this.#groups });
    for (const param of this.#groups.flatMap((g) => g.params)) {
      const saved = state.tensors[param.index]!;
      // In slot order (checkStateDict made sure each is there exactly when the options use it).
      const slots = [saved.squareAvg, saved.gradAvg, saved.momentumBuffer, saved.master].filter((x): x is Float32Array => x !== undefined);
      this.#forEachPiece(param.index, param.size, (c, inChunk, inTensor, count) => {
        slots.forEach((values, slot) => {
          // From the ArrayBuffer itself, so that offset and size are in bytes.
          const to = (slot * c.chunk.slotStride * 4 + inChunk) * 4;
          this.device.queue.writeBuffer(c.buffer, to, values.buffer, values.byteOffset + inTensor * 4, count * 4);
        });
      });
    }
    if (state.skippedSteps !== undefined) {
      this.device.queue.writeBuffer(this.#control, 12, new Uint32Array([state.skippedSteps]));
    }
    lrs.forEach((lr, g) => { this.#lrs[g] = lr; });
    this.#hyperDirty = true;
    this.#step = state.step;
  }

  /** Frees the state and uniform buffers it created; the caller's buffers stay the caller's. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const s of this.#segments) for (const c of s.chunks) c.buffer.destroy();
    this.#hyper.destroy();
    this.#hyperRing.destroy();
    this.#control.destroy();
    for (const b of this.#reduceBuffers) b.destroy();
  }

  #checkUsable(what: string): void {
    if (this.#destroyed) throw new Error(`RMSProp.${what} after destroy(): create a new RMSProp (and loadStateDict to resume).`);
    const lost = this.#loss.info;
    if (lost !== undefined) throw deviceLostError(`RMSProp.${what}`, lost);
  }
}

/** Bytes rounded up to whole u32 words: 16-bit data of an odd count ends mid-word (resolveParam made sure the buffer holds it). */
function wordBytes(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/**
 * The bindings of a chunk's 16-bit parameters (paramDtype 'f16' / 'bf16'): the body's `count4`
 * vec2u words (binding 9) and the tail's words (binding 10) from a 256-aligned offset, through the
 * last word, which an odd count only half uses (resolveParam made sure the buffer holds it).
 */
function halfParamBindings(segment: Segment, chunk: Chunk): { body: GPUBindGroupEntry; tail: GPUBindGroupEntry } {
  const at = segment.param.offset + chunk.first * 2;
  const tail = packedTail(chunk);
  const tailWords = Math.ceil(chunk.tailCount / 2);
  return {
    body: { binding: 9, resource: { buffer: segment.param.buffer, offset: at, size: chunk.count4 * 8 } },
    tail: { binding: 10, resource: { buffer: segment.param.buffer, offset: at + tail.bindingOffset, size: chunk.count4 * 8 - tail.bindingOffset + tailWords * 4 } },
  };
}
