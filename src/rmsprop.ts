/**
 * The host class: owns the optimizer state on the GPU, builds pipelines and bind groups once, and
 * records one compute pass per step.
 */
import { validateLr, type RMSPropOptions, type ResolvedOptions } from './options.js';
import { resolveParams, type ParamGroup, type ParamSpec, type ResolvedGroup, type ResolvedParam } from './params.js';
import { dispatchSize, maxChunkElements, planChunks, stateSlots, type Chunk } from './plan.js';
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

interface Tensor {
  readonly param: ResolvedParam;
  readonly slots: number;
  readonly chunks: readonly ChunkState[];
}

interface Dispatch {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number];
}

/**
 * RMSProp on WebGPU. It trains the caller's own parameter buffers in place, from the caller's
 * gradient buffers, in one compute pass per step (one dispatch per tensor, or per chunk of a
 * tensor larger than a storage binding), with its state in buffers it owns.
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
  readonly #tensors: readonly Tensor[];
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
    const tensors: Tensor[] = [];
    for (const group of this.#groups) {
      const slots = stateSlots(group.options);
      const maxChunk = maxChunkElements(limits.maxStorageBufferBindingSize, limits.maxBufferSize, slots);
      for (const param of group.params) {
        const chunks = planChunks(param.size, maxChunk);
        tensors.push({
          param,
          slots,
          chunks: chunks.map((chunk, c) => ({
            chunk,
            buffer: this.#createState(param, chunk, slots, group.options, chunks.length > 1 ? `.chunk[${c}]` : ''),
          })),
        });
      }
    }
    this.#tensors = tensors;
    const chunkCount = tensors.reduce((n, t) => n + t.chunks.length, 0);
    this.#hyperData = new ArrayBuffer(chunkCount * this.#hyperStride);
    this.#hyper = device.createBuffer({ label: 'RMSProp.hyperparameters', size: this.#hyperData.byteLength, usage: UNIFORM | COPY_DST });
    this.#dispatches = this.#createDispatches();
  }

  #createState(param: ResolvedParam, chunk: Chunk, slots: number, o: ResolvedOptions, suffix: string): GPUBuffer {
    const size = slots * chunk.slotStride * 16;
    const initialize = o.initialScale !== 0;
    const buffer = this.device.createBuffer({
      label: `RMSProp.state[${param.index}]${suffix} ('${param.name}')`,
      size,
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
    for (const tensor of this.#tensors) {
      const { param } = tensor;
      const pipelines = stepPipelines(this.device, this.#groups[param.group]!.options);
      for (const { chunk, buffer: state } of tensor.chunks) {
        const hyper = { binding: 0, resource: { buffer: this.#hyper, offset: slot++ * this.#hyperStride, size: HYPER_BYTES } };
        const stateEntry = { binding: 3, resource: { buffer: state } };
        const at = param.param.offset + chunk.first * 4, gradAt = param.grad.offset + chunk.first * 4;
        const label = `RMSProp.bindGroup[${param.index}]${tensor.chunks.length > 1 ? `.chunk[${chunk.first}]` : ''}`;
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
                { binding: 1, resource: { buffer: param.param.buffer, offset: at, size: bodyBytes } },
                { binding: 2, resource: { buffer: param.grad.buffer, offset: gradAt, size: bodyBytes } },
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
                { binding: 4, resource: { buffer: param.param.buffer, offset: at + chunk.tailBindingOffset, size: tailBytes } },
                { binding: 5, resource: { buffer: param.grad.buffer, offset: gradAt + chunk.tailBindingOffset, size: tailBytes } },
              ],
            }),
          });
        }
      }
    }
    return dispatches;
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
    for (const { param, chunks } of this.#tensors) {
      const o = this.#groups[param.group]!.options;
      for (const { chunk } of chunks) {
        f32.set([this.#lrs[param.group]!, o.alpha, 1 - o.alpha, o.eps, o.momentum, o.weightDecay], at);
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
    const chunks = this.#tensors.flatMap((t) => t.chunks);
    const data = await readRanges(this.device, chunks.map((c) => ({ buffer: c.buffer, offset: 0, size: c.buffer.size })), 'RMSProp.stateDict');
    let next = 0;
    const tensors = this.#tensors.map(({ param, chunks: own }): TensorState => {
      const o = groups[param.group]!;
      const slotData = (slot: number) => {
        const out = new Float32Array(param.size);
        own.forEach(({ chunk }, c) => {
          const start = slot * chunk.slotStride * 4;
          out.set(data[next + c]!.subarray(start, start + chunk.count), chunk.first);
        });
        return out;
      };
      const state: TensorState = {
        name: param.name,
        size: param.size,
        squareAvg: slotData(0),
        ...(o.centered ? { gradAvg: slotData(1) } : {}),
        ...(o.momentum > 0 ? { momentumBuffer: slotData(o.centered ? 2 : 1) } : {}),
      };
      next += own.length;
      return state;
    });
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
    this.#tensors.forEach(({ param, chunks }) => {
      const saved = state.tensors[param.index]!;
      const slots = [saved.squareAvg, saved.gradAvg, saved.momentumBuffer].filter((x): x is Float32Array => x !== undefined);
      for (const { chunk, buffer } of chunks) {
        slots.forEach((values, slot) => {
          // From the ArrayBuffer itself, so that offset and size are in bytes.
          this.device.queue.writeBuffer(buffer, slot * chunk.slotStride * 16, values.buffer, values.byteOffset + chunk.first * 4, chunk.count * 4);
        });
      }
    });
    lrs.forEach((lr, g) => { this.#lrs[g] = lr; });
    this.#hyperDirty = true;
    this.#step = state.step;
  }

  /** Frees the state and uniform buffers it created; the caller's buffers stay the caller's. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const t of this.#tensors) for (const c of t.chunks) c.buffer.destroy();
    this.#hyper.destroy();
  }

  #checkUsable(what: string): void {
    if (this.#destroyed) throw new Error(`RMSProp.${what} after destroy(): create a new RMSProp (and loadStateDict to resume).`);
    if (this.#lost !== undefined) {
      throw new Error(`RMSProp.${what}: the GPU device was lost (${this.#lost}). Create a new device and optimizer, and loadStateDict from your last checkpoint.`);
    }
  }
}
