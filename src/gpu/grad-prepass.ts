/**
 * The gradient pre-pass (skipNonFinite, clipGradNorm): shaders/grad-norm.wgsl's `partialNorms` over
 * each run of blocks (src/gpu/reduce-plan.ts), then one `finish`, into the control buffer that the update
 * reads later in the same compute pass. A ParamArena is one run: two dispatches however many tensors
 * it holds. Every buffer and bind group is made once; its uniforms never change.
 */
import type { ResolvedOptions } from '../rule/options.js';
import type { Segment } from './plan.js';
import { REDUCE_WORKGROUP_SIZE, hugeBits, planReduce, reduceTargetPartials, type ReducePlan } from './reduce-plan.js';
import { reducePipelines } from './pipelines.js';
import { encodeDispatches, type Dispatch } from './dispatches.js';

// GPUBufferUsage flags, spelled out so that importing this module needs no WebGPU globals.
const STORAGE = 0x80, UNIFORM = 0x40;

/** Bytes of `struct Run` (4 u32, f32, u32) and of `struct Finish` (3 words), rounded up to 16 (shaders/grad-norm.wgsl). */
const RUN_BYTES = 32;
const FINISH_BYTES = 16;
/** Bytes of `struct Block` and of `struct Partial`. */
const BLOCK_BYTES = 16;
const PARTIAL_BYTES = 8;

export class GradPrePass {
  /** The plan it records (runs, blocks, partials), for tests and benchmarks. */
  readonly plan: ReducePlan;
  readonly #dispatches: readonly Dispatch[];
  readonly #buffers: readonly GPUBuffer[];

  /**
   * @param segments The optimizer's segments (`planSegments`), in order.
   * @param options Each param group's options (gradDtype per segment; the rest is optimizer-wide).
   * @param control Where `finish` writes: `struct Control` (src/state/state-store.ts owns it).
   */
  constructor(
    device: GPUDevice,
    segments: readonly Segment[],
    options: readonly ResolvedOptions[],
    control: GPUBuffer,
  ) {
    const limits = device.limits;
    const maxPerDimension = limits.maxComputeWorkgroupsPerDimension;
    const dtypes = segments.map((s) => options[s.group]!.gradDtype);
    this.plan = planReduce(segments, dtypes.map((d) => (d === 'f32' ? 4 : 2)), {
      maxBindingBytes: Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize),
      maxBlocksPerRun: maxPerDimension * maxPerDimension,
      targetPartials: reduceTargetPartials(device),
    });
    const { runs, laneVec4s } = this.plan;
    const partialCount = this.plan.partialCount * (this.plan.lanePartials ? REDUCE_WORKGROUP_SIZE : 1);
    const o = options[0]!; // skipNonFinite, clipGradNorm and lossScale are the same in every group
    const stride =
      Math.ceil(RUN_BYTES / limits.minUniformBufferOffsetAlignment) * limits.minUniformBufferOffsetAlignment;
    const uniforms = device.createBuffer({
      label: 'RMSProp.gradNorm.uniforms', size: stride * (runs.length + 1), usage: UNIFORM, mappedAtCreation: true,
    });
    const blockCount = runs.reduce((n, r) => n + r.blocks.length, 0);
    const blocks = device.createBuffer({
      label: 'RMSProp.gradNorm.blocks', size: blockCount * BLOCK_BYTES, usage: STORAGE, mappedAtCreation: true,
    });
    const mapped = uniforms.getMappedRange(), table = new Uint32Array(blocks.getMappedRange());
    const unscale = Math.fround(1 / o.lossScale); // as stepHyper rounds it
    let firstBlock = 0;
    runs.forEach((run, i) => {
      new Uint32Array(mapped, i * stride, 4).set([firstBlock, run.blocks.length, laneVec4s, run.tailStart]);
      new Float32Array(mapped, i * stride + 16, 1)[0] = unscale;
      new Uint32Array(mapped, i * stride + 20, 1)[0] = hugeBits(unscale);
      run.blocks.forEach((b, k) => table.set([b.first4, b.count4, b.tailCount, b.partial], (firstBlock + k) * 4));
      firstBlock += run.blocks.length;
    });
    const finishAt = runs.length * stride;
    new Uint32Array(mapped, finishAt, 3).set([partialCount, 0, Number(o.skipNonFinite)]);
    new Float32Array(mapped, finishAt + 4, 1)[0] = o.clipGradNorm;
    uniforms.unmap();
    blocks.unmap();
    const partials = device.createBuffer({
      label: 'RMSProp.gradNorm.partials',
      size: partialCount * PARTIAL_BYTES,
      usage: STORAGE,
    });
    const partialsEntry = { binding: 3, resource: { buffer: partials } };
    const blocksEntry = { binding: 8, resource: { buffer: blocks } };

    const dispatches: Dispatch[] = runs.map((run, i) => {
      const packed = dtypes[run.segment] !== 'f32';
      const pipeline = reducePipelines(device, dtypes[run.segment]).partials;
      // A binding that no block reads (a lone tensor of 1 to 3 elements has no body; most have no
      // tail) still needs a resource: the block table, bound read-only twice, which WebGPU allows.
      const unread = { buffer: blocks };
      const groups = run.blocks.length;
      const y = groups <= maxPerDimension ? 1 : Math.ceil(groups / maxPerDimension);
      const segment = segments[run.segment]!;
      return {
        pipeline,
        x: Math.ceil(groups / y),
        y,
        bindGroup: device.createBindGroup({
          label: `RMSProp.gradNorm.bindGroup.run[${i}] (segment ${run.segment}, ` +
            `${segment.members.length} tensor${segment.members.length > 1 ? 's' : ''})`,
          layout: pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: uniforms, offset: i * stride, size: RUN_BYTES } },
            { binding: packed ? 6 : 1, resource: run.body ?? unread },
            { binding: packed ? 7 : 2, resource: run.tail ?? unread },
            partialsEntry,
            blocksEntry,
          ],
        }),
      };
    });
    const { finish } = reducePipelines(device);
    dispatches.push({
      pipeline: finish,
      x: 1,
      y: 1,
      bindGroup: device.createBindGroup({
        label: 'RMSProp.gradNorm.bindGroup.finish',
        layout: finish.getBindGroupLayout(0),
        entries: [
          partialsEntry,
          { binding: 4, resource: { buffer: control } },
          { binding: 5, resource: { buffer: uniforms, offset: finishAt, size: FINISH_BYTES } },
        ],
      }),
    });
    this.#dispatches = dispatches;
    this.#buffers = [uniforms, blocks, partials];
  }

  /** Dispatches per step: one per run, and `finish`. */
  get dispatchCount(): number {
    return this.#dispatches.length;
  }

  /** Records the pre-pass into `pass` (before the update, which reads what `finish` writes). */
  encode(pass: GPUComputePassEncoder): void {
    encodeDispatches(pass, this.#dispatches);
  }

  /** Frees its buffers. Safe to call twice. */
  destroy(): void {
    for (const b of this.#buffers) b.destroy();
  }
}
