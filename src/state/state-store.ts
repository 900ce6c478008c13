/**
 * The optimizer's state on the GPU and its way in and out: one state buffer per chunk (v, then m,
 * b and the f32 master copy, each slot `slotStride` vec4s), the control buffer the pre-pass writes
 * (with the count of skipped steps), and the copies to and from the CPU behind `stateDict()`,
 * `loadStateDict()`, `readParams()`, `skippedSteps()` and `lastGradNorm()`.
 */
import type { ResolvedOptions } from '../rule/options.js';
import type { ByteRange, ResolvedGroup } from '../gpu/params.js';
import { hasMaster, stateSlots, type SegmentPlan } from '../gpu/plan.js';
import { checkReadable, readRanges } from './readback.js';
import type { RMSPropState, TensorState } from './state-dict.js';
import { decodeHalves } from '../rule/half.js';
import type { ChunkBuffers } from '../gpu/update-pass.js';
import {
  blocksOf, createBlockwise8State, dequantizeBlockwise, BLOCK_SIZE, ZERO_CODE,
} from '../rule/blockwise8.js';

// GPUBufferUsage flags, spelled out so that importing this module needs no WebGPU globals.
const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, UNIFORM = 0x40;

/** Bytes of `struct Control` (shaders/rmsprop.wgsl, shaders/grad-norm.wgsl): bad, scale, norm, skipped. */
const CONTROL_BYTES = 16;

/** What the control buffer holds, as read back. */
export interface ControlValues {
  /** The global gradient norm of the last step the pre-pass ran for. */
  readonly norm: number;
  /** Steps skipped by skipNonFinite so far. */
  readonly skipped: number;
}

export class StateStore {
  /** Per segment, per chunk: the chunk and its state buffer. */
  readonly chunks: readonly (readonly ChunkBuffers[])[];
  /** `struct Control`: written by the pre-pass's `finish`, read by the update. */
  readonly control: GPUBuffer;
  readonly #device: GPUDevice;
  readonly #groups: readonly ResolvedGroup[];
  /** Each tensor's place: its segment's index, and its first element there. */
  readonly #placements: readonly { readonly segment: number; readonly first: number }[];
  /** Per segment: whether it keeps 8-bit state (its chunks' buffers hold codes and absmax). */
  readonly #eightBit: readonly boolean[];

  constructor(device: GPUDevice, groups: readonly ResolvedGroup[], plans: readonly SegmentPlan[]) {
    this.#device = device;
    this.#groups = groups;
    const resolved = groups.flatMap((g) => g.params);
    this.#eightBit = plans.map((p) => p.blockwise8);
    this.chunks = plans.map(({ segment, chunks, slots, blockwise8 }, s) => {
      const o = groups[segment.group]!.options;
      const names = segment.members.length === 1
        ? resolved[segment.members[0]!.index]!.name
        : `${segment.members.length} tensors`;
      return chunks.map((chunk, c) => ({
        chunk,
        state: blockwise8 ? createState8(
          device,
          `RMSProp.state[${s}]${chunks.length > 1 ? `.chunk[${c}]` : ''}.codes (${names})`,
          chunk.count,
          o,
        ) : createState(
          device,
          `RMSProp.state[${s}]${chunks.length > 1 ? `.chunk[${c}]` : ''} (${names})`,
          chunk.slotStride,
          slots,
          o,
        ),
      }));
    });
    const placements: { segment: number; first: number }[] = [];
    plans.forEach(({ segment }, s) => {
      for (const m of segment.members) placements[m.index] = { segment: s, first: m.first };
    });
    this.#placements = placements;
    this.control = device.createBuffer({
      label: 'RMSProp.control',
      size: CONTROL_BYTES,
      usage: STORAGE | UNIFORM | COPY_SRC | COPY_DST, // written by the pre-pass, read by the update as a uniform
      mappedAtCreation: true,
    });
    // bad 0, scale 1, norm 0, skipped 0 (0 in either type)
    new Float32Array(this.control.getMappedRange()).set([0, 1, 0, 0]);
    this.control.unmap();
  }

  /**
   * Every tensor's state, copied to the CPU (and the skipped-step count when `withSkipped`, and the
   * ranges `extra`, raw): what `stateDict()` returns besides the step count and the options. One
   * snapshot, copied by one submission made before this returns its promise: it holds every step
   * submitted before the call and none submitted after.
   */
  async read(
    withSkipped: boolean,
    extra: readonly ByteRange[] = [],
  ): Promise<{ tensors: TensorState[]; skippedSteps?: number; extra: Float32Array[] }> {
    const all = this.chunks.flat();
    const ranges: ByteRange[] = all.map((c) => ({ buffer: c.state, offset: 0, size: c.state.size }));
    if (withSkipped) ranges.push({ buffer: this.control, offset: 0, size: CONTROL_BYTES });
    ranges.push(...extra);
    const raw = await readRanges(this.#device, ranges, 'RMSProp.stateDict');
    const extraRaw = raw.slice(raw.length - extra.length);
    const data = new Map(all.map((c, i) => [c, raw[i]!]));
    const tensors = this.#groups.flatMap((group) => group.params.map((param): TensorState => {
      const o = group.options;
      if (this.#eightBit[this.#placements[param.index]!.segment]) {
        const codes = new Uint8Array(param.size), absmax = new Float32Array(blocksOf(param.size));
        this.#forEachPiece(param.index, param.size, (c, _inChunk, inTensor, count) => {
          const raw = data.get(c)!;
          const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
          codes.set(bytes.subarray(0, count), inTensor);
          absmax.set(raw.subarray(c.chunk.slotStride, c.chunk.slotStride + blocksOf(count)), inTensor / BLOCK_SIZE);
        });
        const padded = new Uint8Array(absmax.length * BLOCK_SIZE).fill(ZERO_CODE);
        padded.set(codes);
        const squareAvg = dequantizeBlockwise({ size: param.size, codes: padded, absmax });
        return { name: param.name, size: param.size, squareAvg, codes, absmax };
      }
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
    if (!withSkipped) return { tensors, extra: extraRaw };
    const control = raw[all.length]!;
    return { tensors, skippedSteps: new Uint32Array(control.buffer, control.byteOffset, 4)[3]!, extra: extraRaw };
  }

  /**
   * Writes a checked state (`checkStateDict`) into the state buffers through the queue: steps
   * submitted after this call see it.
   */
  write(state: RMSPropState): void {
    for (const param of this.#groups.flatMap((g) => g.params)) {
      const saved = state.tensors[param.index]!;
      if (this.#eightBit[this.#placements[param.index]!.segment]) {
        // Each chunk: its codes padded with the zero code to whole blocks, then its absmax values.
        this.#forEachPiece(param.index, param.size, (c, _inChunk, inTensor, count) => {
          const data = new Uint8Array(c.state.size).fill(ZERO_CODE);
          data.set(saved.codes!.subarray(inTensor, inTensor + count));
          const blocks = saved.absmax!.subarray(inTensor / BLOCK_SIZE, inTensor / BLOCK_SIZE + blocksOf(count));
          new Float32Array(data.buffer, c.chunk.slotStride * 4, blocks.length).set(blocks);
          this.#device.queue.writeBuffer(c.state, 0, data);
        });
        continue;
      }
      // In slot order (checkStateDict made sure each is there exactly when the options use it).
      const slots = [saved.squareAvg, saved.gradAvg, saved.momentumBuffer, saved.master].filter(
        (x): x is Float32Array => x !== undefined,
      );
      this.#forEachPiece(param.index, param.size, (c, inChunk, inTensor, count) => {
        slots.forEach((values, slot) => {
          // From the ArrayBuffer itself, so that offset and size are in bytes.
          const to = (slot * c.chunk.slotStride * 4 + inChunk) * 4;
          this.#device.queue.writeBuffer(c.state, to, values.buffer, values.byteOffset + inTensor * 4, count * 4);
        });
      });
    }
    if (state.skippedSteps !== undefined) {
      this.#device.queue.writeBuffer(this.control, 12, new Uint32Array([state.skippedSteps]));
    }
  }

  /** The control buffer, read back (it sees every step submitted before the call). */
  async readControl(label: string): Promise<ControlValues> {
    const [raw] = await readRanges(this.#device, [{ buffer: this.control, offset: 0, size: CONTROL_BYTES }], label);
    return { norm: raw![2]!, skipped: new Uint32Array(raw!.buffer, raw!.byteOffset, 4)[3]! };
  }

  /**
   * Reads every parameter back, one Float32Array each, in the order given (groups flattened), as one
   * snapshot (as `read`). 16-bit parameters (paramDtype) come back decoded to f32 exactly.
   */
  async readParams(): Promise<Float32Array<ArrayBuffer>[]> {
    const params = this.#groups.flatMap((g) => g.params);
    params.forEach((p) => checkReadable(p.param, `readParams(): '${p.name}'.param`));
    // 16-bit parameters are read as whole words (the buffer holds an odd count's last one) and decoded.
    const ranges = params.map((p) => ({ ...p.param, size: Math.ceil(p.param.size / 4) * 4 }));
    const raw = await readRanges(this.#device, ranges, 'RMSProp.readParams');
    return raw.map((values, i) => {
      const dtype = this.#groups[params[i]!.group]!.options.paramDtype;
      if (dtype === 'f32') return values;
      const n = params[i]!.size;
      return decodeHalves(new Uint16Array(values.buffer, values.byteOffset, n), dtype, new Float32Array(n));
    });
  }

  /**
   * Where tensor `index`'s state lives: one byte span per state slot and per chunk piece (`keep`
   * copies them aside and back).
   */
  tensorStateSpans(index: number): { buffer: GPUBuffer; offset: number; size: number }[] {
    const param = this.#groups.flatMap((g) => g.params)[index]!;
    const slots = stateSlots(this.#groups[param.group]!.options);
    const spans: { buffer: GPUBuffer; offset: number; size: number }[] = [];
    if (this.#eightBit[this.#placements[index]!.segment]) {
      // A segment of this tensor alone: every chunk's whole buffer (codes, padding and absmax) is its.
      this.#forEachPiece(index, param.size, (c) => spans.push({ buffer: c.state, offset: 0, size: c.state.size }));
      return spans;
    }
    this.#forEachPiece(index, param.size, (c, inChunk, _inTensor, count) => {
      for (let slot = 0; slot < slots; slot++) {
        spans.push({ buffer: c.state, offset: (slot * c.chunk.slotStride * 4 + inChunk) * 4, size: count * 4 });
      }
    });
    return spans;
  }

  /** Frees the state and control buffers. Safe to call twice. */
  destroy(): void {
    for (const chunks of this.chunks) for (const c of chunks) c.state.destroy();
    this.control.destroy();
  }

  /**
   * Calls `visit` for each piece of tensor `index` that lies in one chunk: the chunk, the piece's
   * first element within the chunk and within the tensor, and its length.
   */
  #forEachPiece(
    index: number,
    size: number,
    visit: (c: ChunkBuffers, inChunk: number, inTensor: number, count: number) => void,
  ): void {
    const { segment, first } = this.#placements[index]!;
    for (const c of this.chunks[segment]!) {
      const start = Math.max(first, c.chunk.first), end = Math.min(first + size, c.chunk.first + c.chunk.count);
      if (start < end) visit(c, start - c.chunk.first, start - first, end - start);
    }
  }
}

/**
 * A chunk's 8-bit state buffer (stateDtype 'int8-blockwise'): the codes of `count` elements, 4 per
 * u32, padded with the zero code to whole blocks, then one f32 absmax per block; as
 * createBlockwise8State makes them (v starting at initialScale, exactly).
 */
function createState8(device: GPUDevice, label: string, count: number, o: ResolvedOptions): GPUBuffer {
  const initial = createBlockwise8State(count, o);
  const blocks = initial.absmax.length;
  const buffer = device.createBuffer({
    label,
    size: (blocks * BLOCK_SIZE) + blocks * 4,
    usage: STORAGE | COPY_SRC | COPY_DST,
    mappedAtCreation: true,
  });
  const mapped = buffer.getMappedRange();
  new Uint8Array(mapped, 0, blocks * BLOCK_SIZE).set(initial.codes);
  new Float32Array(mapped, blocks * BLOCK_SIZE, blocks).set(initial.absmax);
  buffer.unmap();
  return buffer;
}

/** A chunk's state buffer: `slots` slots of `slotStride` vec4s, v filled with initialScale. */
function createState(
  device: GPUDevice,
  label: string,
  slotStride: number,
  slots: number,
  o: ResolvedOptions,
): GPUBuffer {
  const initialize = o.initialScale !== 0;
  const buffer = device.createBuffer({
    label,
    size: slots * slotStride * 16,
    usage: STORAGE | COPY_SRC | COPY_DST,
    mappedAtCreation: initialize,
  });
  if (initialize) {
    new Float32Array(buffer.getMappedRange(0, slotStride * 16)).fill(o.initialScale); // the v slot
    buffer.unmap();
  }
  return buffer;
}
