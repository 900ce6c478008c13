/**
 * `step(encoder, { keep })`: the kept tensors' parameters and state, copied aside into scratch
 * buffers before the step's pass and back after it, in the same encoder, so they come out bit for
 * bit as they went in. Commands of one encoder run in order and command buffers one after another, so
 * one scratch space serves every step however they are recorded and submitted.
 *
 * The scratch space is a list of buffers, each at most the device's `maxBufferSize` (a buffer past it
 * is invalid, and so would be every command buffer that used it: the caller's whole encoder). The kept
 * bytes are laid end to end across them, a span split where a buffer ends. It grows by adding buffers,
 * never by replacing one: a buffer that an encoder not yet submitted copies through stays valid.
 */
import type { StateStore } from '../state/state-store.js';
import type { ResolvedParam } from './params.js';

const COPY_SRC = 0x04, COPY_DST = 0x08;

interface Span {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

/** One copy of a span's piece into a scratch buffer: `size` bytes at `offset` of `buffer` ↔ `at` of `scratch`. */
interface Piece extends Span {
  readonly scratch: GPUBuffer;
  readonly at: number;
}

/** Smallest scratch buffer added (bytes): growth in steps no smaller, so that a keep set growing slowly adds few. */
const MIN_GROWTH = 64 * 1024;

export class KeepCopies {
  readonly #device: GPUDevice;
  readonly #params: readonly ResolvedParam[];
  readonly #store: Pick<StateStore, 'tensorStateSpans'>;
  /** Bytes of one scratch buffer at most: `maxBufferSize` (or less, for tests), a multiple of 256. */
  readonly #limit: number;
  /** Per tensor, made on first use: its parameter span, then its state spans. */
  readonly #spans: (readonly Span[] | undefined)[] = [];
  /** The scratch buffers, in the order the kept bytes are laid across them. */
  readonly #scratch: GPUBuffer[] = [];
  #capacity = 0;
  /** The copies recorded by `save`, for `restore` to reverse. */
  #saved: Piece[] = [];

  /**
   * @param limit Bytes of one scratch buffer at most (tests lower it); `device.limits.maxBufferSize`
   *   by default, and never more.
   */
  constructor(
    device: GPUDevice,
    params: readonly ResolvedParam[],
    store: Pick<StateStore, 'tensorStateSpans'>,
    limit = device.limits.maxBufferSize,
  ) {
    this.#device = device;
    this.#params = params;
    this.#store = store;
    this.#limit = Math.floor(Math.min(limit, device.limits.maxBufferSize) / 256) * 256;
    if (this.#limit < 256) throw new RangeError(`KeepCopies: a scratch buffer limit of ${limit} bytes is below 256.`);
  }

  /** Bytes of scratch buffers made so far (tests: the growth policy). */
  get scratchSizes(): number[] {
    return this.#scratch.map((b) => b.size);
  }

  /** Records copies of tensors `keep` (checked: resolveKeep) into the scratch space. */
  save(encoder: GPUCommandEncoder, keep: readonly number[]): void {
    const spans = keep.flatMap((i) => this.#spansOf(i));
    this.#reserve(spans.reduce((n, s) => n + s.size, 0));
    const pieces: Piece[] = [];
    let page = 0, at = 0;
    for (const span of spans) {
      for (let done = 0; done < span.size;) {
        let scratch = this.#scratch[page]!;
        if (at === scratch.size) {
          scratch = this.#scratch[++page]!;
          at = 0;
        }
        const size = Math.min(span.size - done, scratch.size - at);
        pieces.push({ buffer: span.buffer, offset: span.offset + done, size, scratch, at });
        encoder.copyBufferToBuffer(span.buffer, span.offset + done, scratch, at, size);
        done += size;
        at += size;
      }
    }
    this.#saved = pieces;
  }

  /** Records the copies back, after the step's pass. */
  restore(encoder: GPUCommandEncoder): void {
    for (const p of this.#saved) encoder.copyBufferToBuffer(p.scratch, p.at, p.buffer, p.offset, p.size);
    this.#saved = [];
  }

  /** Frees every scratch buffer. Safe to call twice. */
  destroy(): void {
    for (const b of this.#scratch) b.destroy();
    this.#scratch.length = 0;
    this.#capacity = 0;
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

  /**
   * Makes the scratch space hold at least `bytes`, adding buffers of at most `#limit` bytes: what is
   * missing, or half the space already made if that is more (so that growth adds few buffers), and
   * at least MIN_GROWTH.
   */
  #reserve(bytes: number): void {
    if (this.#capacity >= bytes) return;
    let add = Math.max(bytes - this.#capacity, Math.floor(this.#capacity / 2), Math.min(MIN_GROWTH, this.#limit));
    while (add > 0) {
      const size = Math.min(Math.ceil(add / 256) * 256, this.#limit);
      this.#scratch.push(this.#device.createBuffer({
        label: `RMSProp.keep.scratch[${this.#scratch.length}]`,
        size,
        usage: COPY_SRC | COPY_DST,
      }));
      this.#capacity += size;
      add -= size;
    }
  }
}
