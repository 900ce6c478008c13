/**
 * Copies one tensor's state from one optimizer's state buffers to another's, on the GPU: the two
 * may lay the tensor out in different pieces (chunks split where each optimizer's binding limit
 * falls), so the spans of each state slot are walked side by side and copied where they overlap.
 * For webgpu-rmsprop/tfjs, which rebuilds its arena when the variable list changes.
 */

/** A byte range of a state buffer (what `StateStore.tensorStateSpans` gives, piece by piece, slot by slot). */
export interface StateSpan {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

/**
 * Records the copies of one tensor's state from `from` to `to` (each piece-major, `slots` spans a
 * piece, as `tensorStateSpans` lists them). Both must hold the same slots and the same byte count.
 */
export function copyStateSpans(
  encoder: GPUCommandEncoder, from: readonly StateSpan[], to: readonly StateSpan[], slots: number,
): void {
  for (let slot = 0; slot < slots; slot++) {
    const a = from.filter((_, k) => k % slots === slot), b = to.filter((_, k) => k % slots === slot);
    const bytes = (spans: readonly StateSpan[]) => spans.reduce((n, s) => n + s.size, 0);
    if (bytes(a) !== bytes(b)) throw new RangeError(`copyStateSpans: ${bytes(a)} bytes to copy into ${bytes(b)}.`);
    let i = 0, j = 0, inA = 0, inB = 0;
    while (i < a.length && j < b.length) {
      const x = a[i]!, y = b[j]!;
      const n = Math.min(x.size - inA, y.size - inB);
      if (n > 0) encoder.copyBufferToBuffer(x.buffer, x.offset + inA, y.buffer, y.offset + inB, n);
      inA += n;
      inB += n;
      if (inA === x.size) { i++; inA = 0; }
      if (inB === y.size) { j++; inB = 0; }
    }
  }
}
