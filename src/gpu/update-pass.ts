/**
 * The update: the dispatches of shaders/rmsprop.wgsl over every chunk, with their bind groups and
 * each chunk's geometry (shape and constant hyperparameters, `struct Geometry`), all made once.
 * `encode(pass)` records them: every body, then every tail, so a pass sets each pipeline once.
 */
import type { ResolvedOptions } from '../rule/options.js';
import { dispatchSize, packedTail, type Chunk, type Segment, type SegmentPlan } from './plan.js';
import { bindGroupLayoutOf, stepPipelines } from './pipelines.js';
import type { Dispatch } from './dispatches.js';
import type { StepValuesRing } from './step-values.js';
import { blocksOf, BUCKET_CODES, BUCKET_THRESHOLD_BITS, DYNAMIC_MAP } from '../rule/blockwise8.js';
import { BLOCKS_PER_WORKGROUP } from './blockwise8-layout.js';

// GPUBufferUsage flags, spelled out so that importing this module needs no WebGPU globals.
const UNIFORM = 0x40;
const STORAGE = 0x80;

/** Bytes of `struct Geometry` in shaders/rmsprop.wgsl (5 u32, 6 f32), rounded up to 16. */
const GEOMETRY_BYTES = 48;

/** A dispatch of the update and its param group (whose cell of the ring it binds at group 1). */
interface GroupDispatch extends Dispatch {
  readonly group: number;
}

/** What the update binds of one chunk: its state buffer (src/state/state-store.ts). */
export interface ChunkBuffers {
  readonly chunk: Chunk;
  readonly state: GPUBuffer;
}

export class UpdatePass {
  readonly #device: GPUDevice;
  /** Every chunk's `struct Geometry`, one uniform slot each, written once. */
  readonly #geometry: GPUBuffer;
  readonly #stride: number;
  /** Bodies (grouped by pipeline), then tails (grouped by pipeline). */
  readonly #dispatches: readonly GroupDispatch[];
  readonly #plans: readonly SegmentPlan[];
  readonly #chunks: readonly (readonly ChunkBuffers[])[];
  readonly #options: readonly ResolvedOptions[];
  /** 8-bit state: the map and quantizer tables (binding 14 of the 8-bit step), written once; if some segment has it. */
  readonly #dynamicMap?: GPUBuffer;

  /**
   * @param plans The segments and their chunks (`planUpdate`).
   * @param chunks Per segment, per chunk, its state buffer.
   * @param options Each param group's options.
   * @param control What the gradient pre-pass writes (src/state/state-store.ts), bound in every dispatch.
   */
  constructor(
    device: GPUDevice,
    plans: readonly SegmentPlan[],
    chunks: readonly (readonly ChunkBuffers[])[],
    options: readonly ResolvedOptions[],
    control: GPUBuffer,
  ) {
    this.#device = device;
    this.#plans = plans;
    this.#chunks = chunks;
    this.#options = options;
    const align = device.limits.minUniformBufferOffsetAlignment;
    this.#stride = Math.ceil(GEOMETRY_BYTES / align) * align;
    const chunkCount = chunks.reduce((n, c) => n + c.length, 0);
    this.#geometry = device.createBuffer({
      label: 'RMSProp.geometry', size: chunkCount * this.#stride, usage: UNIFORM, mappedAtCreation: true,
    });
    const bodies: GroupDispatch[] = [], tails: GroupDispatch[] = [];
    const maxPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    if (plans.some((p) => p.blockwise8)) {
      const tables = quantizerTables();
      this.#dynamicMap = device.createBuffer({
        label: 'RMSProp.dynamicMap', size: tables.byteLength, usage: STORAGE, mappedAtCreation: true,
      });
      new Uint32Array(this.#dynamicMap.getMappedRange()).set(tables);
      this.#dynamicMap.unmap();
    }
    let slot = 0;
    plans.forEach(({ segment, blockwise8 }, s) => {
      const o = options[segment.group]!;
      const pipelines = stepPipelines(device, o);
      const many = chunks[s]!.length > 1;
      for (const { chunk, state } of chunks[s]!) {
        if (blockwise8) {
          // One dispatch a chunk, body and tail together (rmsprop.wgsl, 8-bit blockwise state), in the
          // device's layout; a 'workgroup' chunk of whole vec4s binds its parameters and gradients as vec4s.
          const at = slot++;
          const kernels = pipelines.blockwise8!;
          const vec4 = kernels.layout === 'workgroup' && chunk.tailCount === 0;
          const pipeline = kernels.layout === 'lanes' ? kernels.lanes : vec4 ? kernels.vec4 : kernels.scalar;
          const from = { offset: chunk.first * 4, size: chunk.count * 4 };
          const label = `RMSProp.bindGroup[${s}]${many ? `.chunk[${chunk.first}]` : ''}.blockwise8`;
          const { param, grad } = segment;
          const bindGroup = this.#bindGroup(label, pipeline, [
            { binding: 0, resource: { buffer: this.#geometry, offset: at * this.#stride, size: GEOMETRY_BYTES } },
            { binding: vec4 ? 1 : 4, resource: { buffer: param.buffer, offset: param.offset + from.offset, size: from.size } },
            { binding: vec4 ? 2 : 5, resource: { buffer: grad.buffer, offset: grad.offset + from.offset, size: from.size } },
            { binding: 6, resource: { buffer: control } },
            { binding: 13, resource: { buffer: state } },
            { binding: 14, resource: { buffer: this.#dynamicMap! } },
          ]);
          const perWorkgroup = BLOCKS_PER_WORKGROUP[kernels.layout];
          const [x, y] = blockGrid(Math.ceil(blocksOf(chunk.count) / perWorkgroup), maxPerDimension);
          bodies.push({ pipeline, bindGroup, x, y, group: segment.group });
          continue;
        }
        const label = `RMSProp.bindGroup[${s}]${many ? `.chunk[${chunk.first}]` : ''}`;
        const at = slot++;
        const group = segment.group;
        const geometry = {
          binding: 0,
          resource: { buffer: this.#geometry, offset: at * this.#stride, size: GEOMETRY_BYTES },
        };
        const shared = [
          geometry,
          { binding: 3, resource: { buffer: state } },
          { binding: 6, resource: { buffer: control } },
        ];
        if (chunk.count4 > 0) {
          const [x, y] = dispatchSize(chunk.count4, maxPerDimension);
          const bindGroup = this.#bindGroup(
            `${label}.body`,
            pipelines.body,
            [...shared, ...bodyBindings(segment, chunk, o)],
          );
          bodies.push({ pipeline: pipelines.body, bindGroup, x, y, group });
        }
        if (chunk.tailCount > 0) {
          const bindGroup = this.#bindGroup(
            `${label}.tail`,
            pipelines.tail,
            [...shared, ...tailBindings(segment, chunk, o)],
          );
          tails.push({ pipeline: pipelines.tail, bindGroup, x: 1, y: 1, group });
        }
      }
    });
    const byPipeline = (list: GroupDispatch[]) => {
      const order = new Map<GPUComputePipeline, number>();
      for (const d of list) if (!order.has(d.pipeline)) order.set(d.pipeline, order.size);
      return list
        .map((d, i) => ({ d, i }))
        .sort((a, b) => order.get(a.d.pipeline)! - order.get(b.d.pipeline)! || a.i - b.i)
        .map((e) => e.d);
    };
    this.#writeGeometry();
    this.#geometry.unmap();
    this.#dispatches = [...byPipeline(bodies), ...byPipeline(tails)];
  }

  /** Dispatches per step. */
  get dispatchCount(): number {
    return this.#dispatches.length;
  }

  /**
   * Records the update into `pass`: each dispatch with its param group's cell of the step's slot of
   * `ring` (prepared) at group 1, set when the group changes. Allocates nothing.
   */
  encode(pass: GPUComputePassEncoder, ring: StepValuesRing): void {
    ring.beginPass();
    let pipeline: GPUComputePipeline | undefined;
    const dispatches = this.#dispatches;
    for (let i = 0; i < dispatches.length; i++) {
      const d = dispatches[i]!;
      if (d.pipeline !== pipeline) pass.setPipeline((pipeline = d.pipeline));
      ring.bind(pass, d.group);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.x, d.y);
    }
  }

  /**
   * Fills the f32 master copies (masterWeights) from the caller's 16-bit parameters, on the GPU: one
   * pass, submitted now, so it reads what the queue had written to them before the optimizer was made.
   */
  initMasters(): void {
    const device = this.#device;
    const encoder = device.createCommandEncoder({ label: 'RMSProp.initMaster' });
    const pass = encoder.beginComputePass({ label: 'RMSProp.initMaster' });
    const maxPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    let slot = 0;
    this.#plans.forEach(({ segment }, s) => {
      const init = stepPipelines(device, this.#options[segment.group]!).initMaster;
      for (const { chunk, state } of this.#chunks[s]!) {
        const geometry = {
          binding: 0,
          resource: { buffer: this.#geometry, offset: slot++ * this.#stride, size: GEOMETRY_BYTES },
        };
        if (!init) continue;
        const bindings = halfParamBindings(segment, chunk);
        const parts = [
          { pipeline: init.body, binding: bindings.body, count: chunk.count4, part: 'body' },
          { pipeline: init.tail, binding: bindings.tail, count: chunk.tailCount, part: 'tail' },
        ];
        for (const { pipeline, binding, count, part } of parts) {
          if (count === 0) continue;
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, this.#bindGroup(
            `RMSProp.initMaster.bindGroup[${s}]${this.#chunks[s]!.length > 1 ? `.chunk[${chunk.first}]` : ''}.${part}`,
            pipeline, [geometry, { binding: 3, resource: { buffer: state } }, binding],
          ));
          const [x, y] = part === 'body' ? dispatchSize(count, maxPerDimension) : [1, 1];
          pass.dispatchWorkgroups(x, y);
        }
      }
    });
    pass.end();
    device.queue.submit([encoder.finish()]);
  }

  /** Frees the geometry buffer (the state buffers are the state store's). Safe to call twice. */
  destroy(): void {
    this.#geometry.destroy();
    this.#dynamicMap?.destroy();
  }

  #bindGroup(label: string, pipeline: GPUComputePipeline, entries: GPUBindGroupEntry[]): GPUBindGroup {
    return this.#device.createBindGroup({ label, layout: bindGroupLayoutOf(pipeline), entries });
  }

  #writeGeometry(): void {
    const mapped = this.#geometry.getMappedRange();
    const u32 = new Uint32Array(mapped), f32 = new Float32Array(mapped);
    let slot = 0;
    this.#plans.forEach(({ segment }, s) => {
      const o = this.#options[segment.group]!;
      for (const { chunk } of this.#chunks[s]!) {
        const at = (slot * this.#stride) / 4;
        u32.set([chunk.count4, chunk.slotStride, chunk.tailStart, chunk.tailCount, packedTail(chunk).start], at);
        f32.set([o.alpha, 1 - o.alpha, o.eps, o.momentum, o.weightDecay, 1 / o.lossScale], at + 5); // each rounded once
        slot++;
      }
    });
  }
}

/**
 * A grid of `workgroups` workgroups of the 8-bit step: 1-D while it fits, else 2-D (the shader folds y
 * into its index and leaves the excess blocks alone).
 */
export function blockGrid(workgroups: number, maxPerDimension: number): [number, number] {
  if (workgroups <= maxPerDimension) return [workgroups, 1];
  const y = Math.ceil(workgroups / maxPerDimension);
  if (y > maxPerDimension) throw new RangeError(`${workgroups} workgroups exceed a ${maxPerDimension}² grid.`);
  return [Math.ceil(workgroups / y), y];
}

/**
 * Bytes rounded up to whole u32 words: 16-bit data of an odd count ends mid-word (resolveParam made
 * sure the buffer holds it).
 */
function wordBytes(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/** The body's parameter and gradient bindings of a chunk (f32 or 16-bit). */
function bodyBindings(segment: Segment, chunk: Chunk, o: ResolvedOptions): GPUBindGroupEntry[] {
  const bodyBytes = chunk.count4 * 16;
  const param = o.paramDtype !== 'f32'
    ? halfParamBindings(segment, chunk).body
    : {
      binding: 1,
      resource: { buffer: segment.param.buffer, offset: segment.param.offset + chunk.first * 4, size: bodyBytes },
    };
  const grad = o.gradDtype !== 'f32'
    ? {
      binding: 7,
      resource: { buffer: segment.grad.buffer, offset: segment.grad.offset + chunk.first * 2, size: bodyBytes / 2 },
    }
    : {
      binding: 2,
      resource: { buffer: segment.grad.buffer, offset: segment.grad.offset + chunk.first * 4, size: bodyBytes },
    };
  return [param, grad];
}

/** The tail's parameter and gradient bindings of a chunk (f32 or 16-bit). */
function tailBindings(segment: Segment, chunk: Chunk, o: ResolvedOptions): GPUBindGroupEntry[] {
  const tailBytes = chunk.count * 4 - chunk.tailBindingOffset;
  const at = segment.param.offset + chunk.first * 4;
  const param = o.paramDtype !== 'f32'
    ? halfParamBindings(segment, chunk).tail
    : { binding: 4, resource: { buffer: segment.param.buffer, offset: at + chunk.tailBindingOffset, size: tailBytes } };
  let grad: GPUBindGroupEntry;
  if (o.gradDtype !== 'f32') {
    const packed = packedTail(chunk);
    const gradAt = segment.grad.offset + chunk.first * 2 + packed.bindingOffset;
    grad = {
      binding: 8,
      resource: {
        buffer: segment.grad.buffer,
        offset: gradAt,
        size: wordBytes(chunk.count * 2 - packed.bindingOffset),
      },
    };
  } else {
    const gradAt = segment.grad.offset + chunk.first * 4 + chunk.tailBindingOffset;
    grad = { binding: 5, resource: { buffer: segment.grad.buffer, offset: gradAt, size: tailBytes } };
  }
  return [param, grad];
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
  const tailSize = chunk.count4 * 8 - tail.bindingOffset + tailWords * 4;
  return {
    body: { binding: 9, resource: { buffer: segment.param.buffer, offset: at, size: chunk.count4 * 8 } },
    tail: { binding: 10, resource: { buffer: segment.param.buffer, offset: at + tail.bindingOffset, size: tailSize } },
  };
}

/**
 * The read-only storage `dynamicMap` of the 8-bit step (shaders/rmsprop.wgsl struct DynamicMap), as u32
 * words: the map's 256 values, then per bucket of |x| its code and its threshold's f32 bits
 * (src/rule/blockwise8.ts BUCKET_CODES, BUCKET_THRESHOLD_BITS): one look-up gives both.
 *
 * @example
 * ```ts
 * device.queue.writeBuffer(buffer, 0, quantizerTables());
 * ```
 */
export function quantizerTables(): Uint32Array {
  const words = new Uint32Array(256 + 2 * BUCKET_CODES.length);
  words.set(new Uint32Array(DYNAMIC_MAP.buffer, DYNAMIC_MAP.byteOffset, 256), 0);
  BUCKET_CODES.forEach((c0, b) => {
    words[256 + 2 * b] = c0;
    words[256 + 2 * b + 1] = BUCKET_THRESHOLD_BITS[b]!;
  });
  return words;
}
