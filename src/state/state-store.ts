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

  constructor(device: GPUDevice, groups: readonly ResolvedGroup[], plans: readonly SegmentPlan[]) {
    this.#device = device;
    this.#groups = groups;
    const resolved = groups.flatMap((g) => g.params);
    this.chunks = plans.map(({ segment, chunks, slots }, s) => {
      const o = groups[segment.group]!.options;
      const names = segment.members.length === 1
        ? resolved[segment.members[0]!.index]!.name
        : `${segment.members.length} tensors`;
      return chunks.map((chunk, c) => ({
        chunk,
        state: createState(
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
