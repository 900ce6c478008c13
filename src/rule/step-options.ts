/**
 * What one call of `step()` may ask besides the encoder: `keep`, the tensors to leave exactly as
 * they are in this step (a tensor without a gradient this step, as PyTorch skips a parameter whose
 * `.grad` is None). Checked here, the same way for the GPU optimizer and its CPU twin.
 */

/**
 * Options of one `step()` call.
 *
 * @example
 * ```ts
 * // tensor 2 has no gradient this step: zero it (so clipGradNorm's norm leaves it out), keep it
 * encoder.clearBuffer(arena.grads, arena.tensors[2]!.offset, arena.tensors[2]!.size * 4);
 * optimizer.step(encoder, { keep: [2] });
 * ```
 */
export interface StepOptions {
  /**
   * Indices of tensors (in the order given to the constructor, groups flattened, as `readParams()`)
   * whose parameters and every state value stay bit for bit as they were: the step updates every
   * tensor, then puts these back from a copy made just before it, in the same encoder. Their
   * gradients are still read by the pre-pass (clipGradNorm's norm, skipNonFinite's check): zero them
   * first if they should not count. The step count advances for every tensor. Each kept tensor's
   * parameter buffer needs COPY_SRC and COPY_DST usage, and f32 parameters.
   */
  readonly keep?: readonly number[];
}

/** The tensors that `step()` must check `keep` against. */
export interface KeepTarget {
  readonly name: string;
  /** The parameter buffer's usage flags (the CPU twin: undefined, nothing to check). */
  readonly usage?: number;
  /** 'f32', 'f16' or 'bf16' (the group's paramDtype). */
  readonly paramDtype: string;
}

const COPY_SRC = 0x04, COPY_DST = 0x08;
const NONE: readonly number[] = Object.freeze([]);

/**
 * The kept tensors' indices, checked: a TypeError or RangeError that names the entry and the fix,
 * before anything changes. No options, or no `keep`: an empty list (allocates nothing).
 *
 * @example
 * ```ts
 * resolveKeep({ keep: [1] }, [{ name: 'w', paramDtype: 'f32' }, { name: 'b', paramDtype: 'f32' }], 'step()'); // [1]
 * ```
 */
export function resolveKeep(
  options: StepOptions | undefined,
  tensors: readonly KeepTarget[],
  where: string,
): readonly number[] {
  if (options === undefined) return NONE;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${where}: the step options must be an object such as { keep: [0] }, got ${String(options)}.`);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'keep') throw new TypeError(`${where}: unknown step option '${key}'; the one step option is keep.`);
  }
  const keep = options.keep;
  if (keep === undefined) return NONE;
  if (!Array.isArray(keep)) {
    throw new TypeError(`${where}: keep must be an array of tensor indices (0 to ${tensors.length - 1}), got ${String(keep)}.`);
  }
  const seen = new Set<number>();
  for (const [k, i] of keep.entries()) {
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= tensors.length) {
      throw new RangeError(`${where}: keep[${k}] is ${String(i)}; it must be a tensor index, an integer from 0 to ` +
        `${tensors.length - 1} (the order given to the constructor, groups flattened).`);
    }
    if (seen.has(i)) throw new RangeError(`${where}: keep lists tensor ${i} ('${tensors[i]!.name}') twice; list it once.`);
    seen.add(i);
    const t = tensors[i]!;
    if (t.paramDtype !== 'f32') {
      throw new RangeError(`${where}: keep[${k}] is '${t.name}', whose parameters are ${t.paramDtype}; keep needs f32 ` +
        'parameters (a 16-bit tensor shares its last word with its neighbour). Leave it out of keep.');
    }
    if (t.usage !== undefined && (t.usage & (COPY_SRC | COPY_DST)) !== (COPY_SRC | COPY_DST)) {
      throw new RangeError(`${where}: keep[${k}] is '${t.name}', whose parameter buffer lacks COPY_SRC or COPY_DST ` +
        'usage, which keep needs to copy it aside and back. Create that buffer with GPUBufferUsage.COPY_SRC | ' +
        'GPUBufferUsage.COPY_DST.');
    }
  }
  return keep;
}
