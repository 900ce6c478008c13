/**
 * The values that may change from one step to the next (each param group's lr, decoupled decay
 * factor and bias correction), in a ring of slots that a step selects with a dynamic offset at
 * `setBindGroup`: no copy command per step, and each step reads the values it was recorded with,
 * in any pattern of encoders and submissions.
 *
 * The rule that makes that hold: a slot is written (queue.writeBuffer) only when no recorded step
 * that uses it can still run.
 * - Steps that the optimizer submits itself (`step()` without an encoder) use one slot of their own:
 *   a write to it is ordered on the queue after the submission of every earlier such step.
 * - Steps recorded into the caller's encoders use the other slots. New values go to a free slot;
 *   the slot they replace is retired. The shader counts, per slot, the steps that ran with it
 *   (`ran`, one atomic add per step); a retired slot becomes free again once a readback of those
 *   counts (submitted after the caller's command buffers, so it sees their work) equals the steps
 *   recorded with it. A step recorded into an encoder that is never submitted keeps its slot retired.
 * - When no slot is free the ring grows by a page; past MAX_PAGES it throws a RangeError.
 * Steps whose values did not change reuse the current slot and write nothing.
 *
 * A slot holds one cell per param group (`struct StepGroup` of shaders/rmsprop.wgsl: lr, decay factor,
 * bias correction and the slot's index), each at its own offset aligned for a dynamic uniform offset,
 * and an update dispatch binds its group's cell as a uniform of fixed size: `bind(pass, group)`. A
 * read-only storage binding of every group's values, indexed per invocation by the group, cost the
 * plain step up to a third of its speed on SwiftShader (docs/benchmarks.md, "Step cost").
 *
 * The count of steps run with a slot is one dispatch of its own a step (`encodeCount`, shaders/rmsprop.wgsl
 * `countStep`), so no update dispatch binds a buffer that another dispatch of the step writes.
 */
import { countStepLayout, countStepPipeline, stepValuesLayout } from './pipelines.js';

// GPUBufferUsage and GPUMapMode flags, spelled out so that importing this module needs no WebGPU globals.
const MAP_READ = 0x01, COPY_SRC = 0x04, COPY_DST = 0x08, UNIFORM = 0x40, STORAGE = 0x80;

/** Slots per page (one storage buffer of values, one of counters). */
export const PAGE_SLOTS = 64;
/**
 * Pages at most (a cell of 256 bytes a param group and slot: 4 MiB in all for one group): steps with
 * new values that may wait in encoders before their work is known to be done.
 */
export const MAX_PAGES = 256;
/** A readback of the counters starts when fewer slots than this are free. */
const RECLAIM_BELOW = PAGE_SLOTS / 2;
/** f32 values per param group in a slot (`struct StepGroup` of shaders/rmsprop.wgsl; the 4th holds the slot). */
export const GROUP_VALUES = 4;
/** Bytes of `struct StepGroup`: what a cell binds. */
const CELL_BYTES = 16;

interface Page {
  readonly values: GPUBuffer;
  readonly ran: GPUBuffer;
  readonly staging: GPUBuffer;
  /** The update's group 1 (a cell at a dynamic offset). */
  readonly bindGroup: GPUBindGroup;
  /** countStep's group 0 (a cell and the counters). */
  readonly countGroup: GPUBindGroup;
}

export class StepValuesRing {
  /**
   * This step's values, filled by the caller before `prepare()`: per group `GROUP_VALUES` f32
   * (lr, decayFactor, biasCorrection, unused), each already rounded to f32.
   */
  readonly next: Float32Array;
  readonly #device: GPUDevice;
  readonly #label: string;
  readonly #groupCount: number;
  /** Bytes between a slot's cells (the dynamic uniform offset alignment, at least a cell) and between slots. */
  readonly #cellStride: number;
  readonly #stride: number;
  readonly #pages: Page[] = [];
  /** One slot's bytes as written: each group's cell (its values, then the slot's index). */
  readonly #slotData: ArrayBuffer;
  readonly #slotWords: Uint32Array;
  readonly #slotFloats: Float32Array;
  /** `next`'s bits, to compare. */
  readonly #nextBits: Uint32Array;
  /** The values of the latest version (bits, and the same as f32), and its number. */
  readonly #latest: Uint32Array;
  readonly #latestFloats: Float32Array;
  #version = 0;
  /** Per slot (page * PAGE_SLOTS + index): steps recorded with it into callers' encoders (mod 2^32). */
  readonly #recorded: number[] = [];
  /** Per slot: retired and waiting for its steps to run. */
  readonly #retired: boolean[] = [];
  #retiredCount = 0;
  /** Slots ready to be written, never the own slot (0) or the current one. */
  readonly #free: number[] = [];
  /** The caller-encoder slot holding the version `#callerVersion` (-1: none yet). */
  #current = -1;
  #callerVersion = -1;
  /** The version in the own slot (slot 0), which only the optimizer's own submissions use. */
  #ownVersion = -1;
  /** The slot the prepared step uses. */
  #prepared = 0;
  readonly #offsets = new Uint32Array(1);
  /** The group whose cell `bind` set last in the current pass, or -1. */
  #bound = -1;
  /** The readback in flight, if any. */
  #reclaiming: Promise<void> | undefined;
  #destroyed = false;
  readonly #maxPages: number;
  readonly #countPipeline: GPUComputePipeline;

  /**
   * @param groupCount Param groups: entries per slot.
   * @param label Prefix of the labels of its buffers.
   * @param maxPages Pages at most (tests lower it).
   */
  constructor(device: GPUDevice, groupCount: number, label: string, maxPages = MAX_PAGES) {
    this.#device = device;
    this.#maxPages = maxPages;
    this.#label = label;
    this.#groupCount = groupCount;
    const align = device.limits.minUniformBufferOffsetAlignment;
    this.#cellStride = Math.ceil(CELL_BYTES / align) * align;
    this.#stride = this.#cellStride * groupCount;
    this.#slotData = new ArrayBuffer(this.#stride);
    this.#slotWords = new Uint32Array(this.#slotData);
    this.#slotFloats = new Float32Array(this.#slotData);
    this.next = new Float32Array(groupCount * GROUP_VALUES);
    this.#nextBits = new Uint32Array(this.next.buffer);
    this.#latest = new Uint32Array(groupCount * GROUP_VALUES).fill(0x7fc00000); // NaN bits: no version yet
    this.#latestFloats = new Float32Array(this.#latest.buffer);
    this.#countPipeline = countStepPipeline(device);
    this.#addPage();
  }

  /** Slots in all pages (the ring's size now). */
  get capacity(): number {
    return this.#pages.length * PAGE_SLOTS;
  }

  /**
   * Each page's `ran` counters (COPY_SRC): their sum, mod 2^32, is the number of steps that have run,
   * every slot's (the own slot's too). `stateDict()` copies them with the state, to count its steps.
   */
  get counters(): GPUBuffer[] {
    return this.#pages.map((page) => page.ran);
  }

  /** Caller-encoder slots free to be written now. */
  get freeSlots(): number {
    return this.#free.length;
  }

  /**
   * Fixes the slot of the step about to be recorded, writing `next` into a slot if it differs from
   * the values that slot holds. `ownSubmit`: the optimizer submits the step itself, now. Throws a
   * RangeError, having changed nothing, when no slot can take new values.
   */
  prepare(ownSubmit: boolean): void {
    const changed = this.#differs();
    if (ownSubmit) {
      if (changed || this.#ownVersion !== this.#version) {
        if (changed) this.#newVersion();
        this.#write(0);
        this.#ownVersion = this.#version;
      }
      this.#prepared = 0;
      return;
    }
    if (changed || this.#callerVersion !== this.#version || this.#current < 0) {
      if (this.#free.length === 0) this.#grow();
      if (changed) this.#newVersion();
      const slot = this.#free.pop()!;
      if (this.#current >= 0) this.#retire(this.#current);
      this.#write(slot);
      this.#current = slot;
      this.#callerVersion = this.#version;
      if (this.#free.length < RECLAIM_BELOW) this.#reclaim();
    }
    this.#recorded[this.#current] = (this.#recorded[this.#current]! + 1) >>> 0;
    this.#prepared = this.#current;
  }

  /** Starts a pass: the next `bind` sets group 1 whatever it held. */
  beginPass(): void {
    this.#bound = -1;
  }

  /** Sets group 1 of `pass` to param group `group`'s cell of the prepared step's slot, unless it holds it already. */
  bind(pass: GPUComputePassEncoder, group: number): void {
    if (group === this.#bound) return;
    this.#bound = group;
    const slot = this.#prepared;
    this.#offsets[0] = (slot % PAGE_SLOTS) * this.#stride + group * this.#cellStride;
    pass.setBindGroup(1, this.#pages[Math.floor(slot / PAGE_SLOTS)]!.bindGroup, this.#offsets, 0, 1);
  }

  /**
   * Records the prepared step's count (`countStep`, one invocation) into `pass`, after the update; nothing
   * for a step on the own slot (the optimizer's own submission: the queue orders its reuse).
   */
  encodeCount(pass: GPUComputePassEncoder): void {
    const slot = this.#prepared;
    if (slot === 0) return;
    this.#offsets[0] = (slot % PAGE_SLOTS) * this.#stride;
    pass.setPipeline(this.#countPipeline);
    pass.setBindGroup(0, this.#pages[Math.floor(slot / PAGE_SLOTS)]!.countGroup, this.#offsets, 0, 1);
    pass.dispatchWorkgroups(1);
  }

  /** Frees the ring's buffers. Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const page of this.#pages) {
      page.values.destroy();
      page.ran.destroy();
      page.staging.destroy();
    }
  }

  #differs(): boolean {
    const next = this.#nextBits, latest = this.#latest;
    for (let i = 0; i < next.length; i++) if (next[i] !== latest[i]) return true;
    return false;
  }

  #newVersion(): void {
    this.#latest.set(this.#nextBits);
    this.#version++;
  }

  #write(slot: number): void {
    const cellWords = this.#cellStride / 4;
    for (let g = 0; g < this.#groupCount; g++) {
      this.#slotFloats.set(this.#latestFloats.subarray(g * GROUP_VALUES, g * GROUP_VALUES + 3), g * cellWords);
      this.#slotWords[g * cellWords + 3] = slot % PAGE_SLOTS;
    }
    const page = this.#pages[Math.floor(slot / PAGE_SLOTS)]!;
    this.#device.queue.writeBuffer(page.values, (slot % PAGE_SLOTS) * this.#stride, this.#slotData);
  }

  #retire(slot: number): void {
    this.#retired[slot] = true;
    this.#retiredCount++;
  }

  /**
   * Resolves once a readback submitted now has freed every retired slot whose steps have run: after
   * submitting the encoders it recorded into, a caller that ran out of slots awaits this.
   */
  async settle(): Promise<void> {
    while (this.#reclaiming) await this.#reclaiming;
    await this.#reclaim();
  }

  #grow(): void {
    if (this.#pages.length >= this.#maxPages) {
      throw new RangeError(
        `step(encoder): ${this.capacity - 1} steps with new hyperparameters (lr, a schedule, biasCorrection) ` +
        'are recorded into command buffers not yet known to have run, as many as the optimizer keeps apart. ' +
        'Submit those encoders, then await optimizer.settle() before recording more (step() without an encoder ' +
        'has no such limit). Nothing was changed.',
      );
    }
    this.#addPage();
    this.#reclaim();
  }

  #addPage(): void {
    const p = this.#pages.length;
    const label = `${this.#label}.stepValues.page[${p}]`;
    const values = this.#device.createBuffer({
      label: `${label}.values`,
      size: PAGE_SLOTS * this.#stride,
      usage: UNIFORM | COPY_DST,
    });
    const ran = this.#device.createBuffer({ label: `${label}.ran`, size: PAGE_SLOTS * 4, usage: STORAGE | COPY_SRC });
    const staging = this.#device.createBuffer({
      label: `${label}.ranReadback`,
      size: PAGE_SLOTS * 4,
      usage: MAP_READ | COPY_DST,
    });
    const bindGroup = this.#device.createBindGroup({
      label: `${label}.bindGroup`,
      layout: stepValuesLayout(this.#device),
      entries: [{ binding: 0, resource: { buffer: values, offset: 0, size: CELL_BYTES } }],
    });
    const countGroup = this.#device.createBindGroup({
      label: `${label}.countBindGroup`,
      layout: countStepLayout(this.#device),
      entries: [
        { binding: 11, resource: { buffer: values, offset: 0, size: CELL_BYTES } },
        { binding: 12, resource: { buffer: ran } },
      ],
    });
    this.#pages.push({ values, ran, staging, bindGroup, countGroup });
    for (let i = PAGE_SLOTS - 1; i >= 0; i--) {
      const slot = p * PAGE_SLOTS + i;
      this.#recorded[slot] = 0;
      this.#retired[slot] = false;
      if (slot !== 0) this.#free.push(slot); // slot 0 is the own slot
    }
  }

  /**
   * Reads every page's counters back (one at a time in flight) and frees each retired slot whose
   * recorded steps have all run. The copy is submitted after every command buffer submitted so far,
   * so a count it reads includes every step of theirs.
   */
  #reclaim(): Promise<void> {
    if (this.#reclaiming) return this.#reclaiming;
    if (this.#retiredCount === 0 || this.#destroyed) return Promise.resolve();
    const pages = this.#pages.slice();
    const encoder = this.#device.createCommandEncoder({ label: `${this.#label}.stepValues.reclaim` });
    for (const page of pages) encoder.copyBufferToBuffer(page.ran, 0, page.staging, 0, PAGE_SLOTS * 4);
    this.#device.queue.submit([encoder.finish()]);
    const done = Promise.all(pages.map((page) => page.staging.mapAsync(MAP_READ))).then(() => {
      if (this.#destroyed) return;
      pages.forEach((page, p) => {
        const ran = new Uint32Array(page.staging.getMappedRange());
        for (let i = 0; i < PAGE_SLOTS; i++) {
          const slot = p * PAGE_SLOTS + i;
          if (this.#retired[slot] && ran[i] === this.#recorded[slot]) {
            this.#retired[slot] = false;
            this.#retiredCount--;
            this.#free.push(slot);
          }
        }
      });
    }).catch(() => {
      // A destroyed optimizer or a lost device: nothing left to reclaim for.
    }).finally(() => {
      if (!this.#destroyed) for (const page of pages) if (page.staging.mapState === 'mapped') page.staging.unmap();
      this.#reclaiming = undefined;
    });
    this.#reclaiming = done;
    return done;
  }
}
