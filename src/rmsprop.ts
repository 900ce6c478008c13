/**
 * The host class: owns the optimizer state on the GPU, builds pipelines and bind groups once, and
 * records one compute pass per step.
 */
import { validateLr, type RMSPropOptions, type ResolvedOptions } from './options.js';
import { resolveParams, type ParamGroup, type ParamSpec, type ResolvedGroup } from './params.js';
import { dispatchSize, maxChunkElements, planChunks, planSegments, stateSlots, type Chunk, type Segment } from './plan.js';
import { stepPipelines } from './pipelines.js';
import { checkReadable, readRanges } from './readback.js';
import { checkStateDict, type RMSPropState, type TensorState } from './state-dict.js';

// GPUBufferUsage flags, spelled out so that importing this module needs no WebGPU globals.
const STORAGE = 0x80, UNIFORM = 0x40, COPY_SRC = 0x04, COPY_DST = 0x08;

/** Bytes of `struct Hyper` in shaders/rmsprop.wgsl: 6 f32 then 4 u32, rounded up to 16. */
const HYPER_BYTES = 48;

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
  /** Hyperparameters of every chunk, one uniform slot each, in chunk order. */
  readonly #hyper: GPUBuffer;
  readonly #hyperData: ArrayBuffer;
  readonly #hyperStride: number;
  readonly #lrs: number[];
  #hyperDirty = true;
  #step = 0;
  #lastEncoder: GPUCommandEncoder | undefined;
  #destroyed = false;
  #lost: string | undefined;

  /**
   * Checks `params` and `options` (throwing before any GPU object is made), then allocates the state.
   *
   * @param device The device that owns the parameter and gradient buffers.
   * @param params `{ param, grad, name? }` per tensor, or param groups `{ params, ...options }`.
   * @param options Hyperparameters; PyTorch's defaults where missing. See `presets` for other frameworks.
   */
  constructor(device: GPUDevice, params: readonly ParamSpec[] | readonly ParamGroup[], options?: Partial<RMSPropOptions>) {
    if (typeof device !== 'object' || device === null || typeof device.createBuffer !== 'function') {
      throw new TypeError('device must be a GPUDevice: get one with (await navigator.gpu.requestAdapter()).requestDevice().');
    }
    this.device = device;
    this.#groups = resolveParams(params, options, device.limits);
    this.#lrs = this.#groups.map((g) => g.options.lr);
    const limits = device.limits;
    this.#hyperStride = Math.ceil(HYPER_BYTES / limits.minUniformBufferOffsetAlignment) * limits.minUniformBufferOffsetAlignment;

    // Everything is checked: from here on GPU objects are made.
    device.lost.then((info) => { this.#lost = `${info.reason}: ${info.message}`; }, () => {});
    const resolved = this.#groups.flatMap((g) => g.params);
    this.#segments = planSegments(resolved).map((segment, s) => {
      const options = this.#groups[segment.group]!.options;
      const slots = stateSlots(options);
      const chunks = planChunks(segment.size, maxChunkElements(limits.maxStorageBufferBindingSize, limits.maxBufferSize, slots));
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
    this.#dispatches = this.#createDispatches();
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
      const pipelines = stepPipelines(this.device, this.#groups[segment.group]!.options);
      for (const { chunk, buffer: state } of chunks) {
        const hyper = { binding: 0, resource: { buffer: this.#hyper, offset: slot++ * this.#hyperStride, size: HYPER_BYTES } };
        const stateEntry = { binding: 3, resource: { buffer: state } };
        const at = segment.param.offset + chunk.first * 4, gradAt = segment.grad.offset + chunk.first * 4;
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
                { binding: 1, resource: { buffer: segment.param.buffer, offset: at, size: bodyBytes } },
                { binding: 2, resource: { buffer: segment.grad.buffer, offset: gradAt, size: bodyBytes } },
                stateEntry,
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
                { binding: 4, resource: { buffer: segment.param.buffer, offset: at + chunk.tailBindingOffset, size: tailBytes } },
                { binding: 5, resource: { buffer: segment.grad.buffer, offset: gradAt + chunk.tailBindingOffset, size: tailBytes } },
              ],
            }),
          });
        }
      }
    });
    return dispatches;
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
   * The learning rate (of the first param group). Setting it sets every group's; the new value
   * is written to the GPU at the next `step()`, and no pipeline is rebuilt.
   */
  get lr(): number {
    return this.#lrs[0]!;
  }

  set lr(value: number) {
    validateLr(value, 'lr');
    this.#lrs.fill(value);
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
   * Hyperparameters changed since the last step (`lr`) are written with `queue.writeBuffer`, which
   * takes effect before the next submitted command buffer: so change `lr` only between submissions,
   * not between two steps recorded into the same encoder (that throws).
   */
  step(encoder?: GPUCommandEncoder): void {
    this.#checkUsable('step()');
    if (encoder !== undefined && (typeof encoder !== 'object' || encoder === null || typeof encoder.beginComputePass !== 'function')) {
      throw new TypeError('step(encoder): encoder must be a GPUCommandEncoder, or left out to submit a command buffer of its own.');
    }
    if (encoder !== undefined && encoder === this.#lastEncoder && this.#hyperDirty) {
      throw new Error('step(encoder): lr changed between two steps recorded into the same encoder. queue.writeBuffer would apply the new value to both: submit the encoder before changing lr.');
    }
    this.#writeHyper();
    const commands = encoder ?? this.device.createCommandEncoder({ label: 'RMSProp.step' });
    const pass = commands.beginComputePass({ label: 'RMSProp.step' });
    let pipeline: GPUComputePipeline | undefined;
    for (const d of this.#dispatches) {
      if (d.pipeline !== pipeline) pass.setPipeline((pipeline = d.pipeline));
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1]);
    }
    pass.end();
    if (!encoder) this.device.queue.submit([commands.finish()]);
    this.#lastEncoder = encoder;
    this.#step++;
  }

  /** Writes the uniform slots if a hyperparameter changed since they were last written. */
  #writeHyper(): void {
    if (!this.#hyperDirty) return;
    const f32 = new Float32Array(this.#hyperData), u32 = new Uint32Array(this.#hyperData);
    let at = 0;
    for (const { segment, chunks } of this.#segments) {
      const o = this.#groups[segment.group]!.options;
      for (const { chunk } of chunks) {
        f32.set([this.#lrs[segment.group]!, o.alpha, 1 - o.alpha, o.eps, o.momentum, o.weightDecay], at);
        u32.set([chunk.count4, chunk.slotStride, chunk.tailStart, chunk.tailCount], at + 6);
        at += this.#hyperStride / 4;
      }
    }
    this.device.queue.writeBuffer(this.#hyper, 0, this.#hyperData);
    this.#hyperDirty = false;
  }

  /**
   * Reads every parameter back, one Float32Array each, in the order given (groups flattened).
   * It sees every step submitted before the call. The parameter buffers need COPY_SRC usage.
   */
  async readParams(): Promise<Float32Array[]> {
    this.#checkUsable('readParams()');
    const params = this.#groups.flatMap((g) => g.params);
    params.forEach((p) => checkReadable(p.param, `readParams(): '${p.name}'.param`));
    return readRanges(this.device, params.map((p) => p.param), 'RMSProp.readParams');
  }

  /**
   * The optimizer state, copied to the CPU: step count, options and per-tensor state, in a form
   * `loadStateDict` restores bit for bit (on this optimizer, a new one, or the CPU `ReferenceRMSProp`).
   */
  async stateDict(): Promise<RMSPropState> {
    this.#checkUsable('stateDict()');
    const step = this.#step, groups = this.groupOptions;
    const chunks = this.#segments.flatMap((s) => s.chunks);
    const raw = await readRanges(this.device, chunks.map((c) => ({ buffer: c.buffer, offset: 0, size: c.buffer.size })), 'RMSProp.stateDict');
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
      };
    }));
    return {
      step,
      groups: groups.map((options, g) => ({ options, params: this.#groups[g]!.params.map((p) => p.index) })),
      tensors,
    };
  }

  /**
   * Restores a state from `stateDict()`: the step count, each group's lr, and every tensor's state.
   * The state must come from the same parameters (names and sizes) and options (lr aside);
   * otherwise it throws, and the optimizer stays as it was.
   */
  loadStateDict(state: RMSPropState): void {
    this.#checkUsable('loadStateDict()');
    const lrs = checkStateDict(state, { groups: this.#groups });
    for (const param of this.#groups.flatMap((g) => g.params)) {
      const saved = state.tensors[param.index]!;
      const slots = [saved.squareAvg, saved.gradAvg, saved.momentumBuffer].filter((x): x is Float32Array => x !== undefined);
      this.#forEachPiece(param.index, param.size, (c, inChunk, inTensor, count) => {
        slots.forEach((values, slot) => {
          // From the ArrayBuffer itself, so that offset and size are in bytes.
          const to = (slot * c.chunk.slotStride * 4 + inChunk) * 4;
          this.device.queue.writeBuffer(c.buffer, to, values.buffer, values.byteOffset + inTensor * 4, count * 4);
        });
      });
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
  }

  #checkUsable(what: string): void {
    if (this.#destroyed) throw new Error(`RMSProp.${what} after destroy(): create a new RMSProp (and loadStateDict to resume).`);
    if (this.#lost !== undefined) {
      throw new Error(`RMSProp.${what}: the GPU device was lost (${this.#lost}). Create a new device and optimizer, and loadStateDict from your last checkpoint.`);
    }
  }
}
