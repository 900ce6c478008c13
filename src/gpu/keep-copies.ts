/**
 * `step(encoder, { keep })`: the kept tensors' parameters and state, copied aside into a scratch
 * buffer before the step's pass and back after it, in the same encoder, so they come out bit for bit
 * as they went in. Commands of one encoder run in order and command buffers one after another, so
 * one scratch buffer serves every step however they are recorded and submitted.
 */
import type { StateStore } from '../state/state-store.js';
import type { ResolvedParam } from './params.js';

const COPY_SRC = 0x04, COPY_DST = 0x08;

interface Span {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

export class KeepCopies {
  readonly #device: GPUDevice;
  readonly #params: readonly ResolvedParam[];
  readonly #store: StateStore;
  /** Per tensor, made on first use: its parameter span, then its state spans. */
  readonly #spans: (readonly Span[] | undefined)[] = [];
  #scratch: GPUBuffer | undefined;
  /**
   * Scratch buffers outgrown: an encoder not yet submitted may still copy through them, and a
   * command buffer that uses a destroyed buffer fails, so they are freed with the optimizer.
   */
  readonly #retired: GPUBuffer[] = [];
  /** The spans saved by `save` for `restore`, with their places in the scratch buffer. */
  #saved: { span: Span; at: number }[] = [];

  constructor(device: GPUDevice, params: readonly ResolvedParam[], store: StateStore) {
    this.#device = device;
    this.#params = params;
    this.#store = store;
  }

  /** Records copies of tensors `keep` (checked: resolveKeep) into the scratch buffer. */
  save(encoder: GPUCommandEncoder, keep: readonly number[]): void {
    const spans = keep.flatMap((i) => this.#spansOf(i));
    const bytes = spans.reduce((n, s) => n + s.size, 0);
    const scratch = this.#scratchOf(bytes);
    let at = 0;
    this.#saved = spans.map((span) => {
      encoder.copyBufferToBuffer(span.buffer, span.offset, scratch, at, span.size);
      const place = { span, at };
      at += span.size;
      return place;
    });
  }

  /** Records the copies back, after the step's pass. */
  restore(encoder: GPUCommandEncoder): void {
    const scratch = this.#scratch!;
    for (const { span, at } of this.#saved) encoder.copyBufferToBuffer(scratch, at, span.buffer, span.offset, span.size);
    this.#saved = [];
  }

  /** Frees every scratch buffer. Safe to call twice. */
  destroy(): void {
    this.#scratch?.destroy();
    for (const b of this.#retired) b.destroy();
    this.#retired.length = 0;
  }

  #spansOf(index: number): readonly Span[] {
    let spans = this.#spans[index];
    if (!spans) {
      const p = this.#params[index]!;
      spans = [{ buffer: p.param.buffer, offset: p.param.offset, size: p.param.size }, ...this.#store.tensorStateSpans(index)];
      this.#spans[index] = spans;
    }
    return spans;
  }

  /** A scratch buffer of at least `bytes`: the current one, or one twice as large (the old one retired). */
  #scratchOf(bytes: number): GPUBuffer {
    const current = this.#scratch;
    if (current && current.size >= bytes) return current;
    if (current) this.#retired.push(current);
    const size = Math.max(Math.ceil(bytes / 256) * 256, 2 * (current?.size ?? 0));
    this.#scratch = this.#device.createBuffer({ label: 'RMSProp.keep.scratch', size, usage: COPY_SRC | COPY_DST });
    return this.#scratch;
  }
}
