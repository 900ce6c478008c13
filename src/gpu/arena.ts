/**
 * `ParamArena`: a whole model's parameters in one buffer and its gradients in another, handed out
 * as per-tensor views for the app's own kernels. An optimizer over an arena's tensors updates all of
 * them in one dispatch per step.
 */
import { describe } from '../rule/options.js';
import type { ParamSpec } from './params.js';

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08;

/**
 * Tensors start at multiples of 256 bytes: the largest minStorageBufferOffsetAlignment WebGPU allows.
 *
 * @example
 * ```ts
 * arena.tensor('b1').offset % ARENA_ALIGNMENT; // 0, for every tensor of a ParamArena
 * ```
 */
export const ARENA_ALIGNMENT = 256;

/** Marks specs that come from an arena, so the optimizer may update their zero padding along with them. */
export const ARENA = Symbol('webgpu-rmsprop.arena');

/**
 * A tensor's place in an arena.
 *
 * @example
 * ```ts
 * const w1: ArenaTensor = arena.tensor('w1');
 * device.queue.writeBuffer(arena.params, w1.offset, initialW1); // initialW1: w1.size f32 values
 * pass.setBindGroup(0, device.createBindGroup({
 *   layout,
 *   entries: [{ binding: 0, resource: w1.param }, { binding: 1, resource: w1.grad }],
 * }));
 * ```
 */
export interface ArenaTensor {
  /** The name given to the `ParamArena` constructor, unique in the arena; also the spec's `name`. */
  readonly name: string;
  /** Elements. */
  readonly size: number;
  /** Byte offset in both the parameter and the gradient buffer (a multiple of 256). */
  readonly offset: number;
  /** The parameter's range, to bind in the app's kernels or pass to `RMSProp`. */
  readonly param: GPUBufferBinding;
  /** The gradient's range. */
  readonly grad: GPUBufferBinding;
}

/**
 * One parameter buffer and one gradient buffer for many tensors, each tensor at a 256-byte aligned
 * offset. The padding between tensors is zero and stays zero: the optimizer leaves zeros unchanged
 * under every option.
 *
 * @example
 * ```ts
 * const arena = new ParamArena(device, [{ name: 'w1', size: 784 * 128 }, { name: 'b1', size: 128 }]);
 * device.queue.writeBuffer(arena.params, arena.tensor('w1').offset, initialW1);
 * // bind arena.tensor('w1').param and .grad in your own forward and backward kernels, then:
 * const optimizer = new RMSProp(device, arena.specs(), { lr: 1e-3 }); // one dispatch per step
 * ```
 */
export class ParamArena {
  /** All parameters: STORAGE | COPY_SRC | COPY_DST. */
  readonly params: GPUBuffer;
  /** All gradients: STORAGE | COPY_SRC | COPY_DST. */
  readonly grads: GPUBuffer;
  /** The tensors, in the order given. */
  readonly tensors: readonly ArenaTensor[];
  readonly #byName = new Map<string, ArenaTensor>();

  /**
   * @param device The device to allocate on.
   * @param tensors Names and element counts (f32), in the order the optimizer will see them.
   * @param label Prefix of the buffers' labels.
   */
  constructor(device: GPUDevice, tensors: readonly { name: string; size: number }[], label = 'ParamArena') {
    if (!Array.isArray(tensors) || tensors.length === 0) {
      throw new RangeError('ParamArena: tensors must be a non-empty array of { name, size }.');
    }
    let bytes = 0;
    const names = new Set<string>();
    const layout = tensors.map((t, i) => {
      if (typeof t?.name !== 'string' || t.name === '') {
        throw new TypeError(`ParamArena: tensors[${i}].name must be a non-empty string, got ${describe(t?.name)}.`);
      }
      if (!Number.isSafeInteger(t.size) || t.size <= 0) {
        throw new RangeError(`ParamArena: tensors[${i}] ('${t.name}').size must be a positive integer, got ${t.size}.`);
      }
      if (names.has(t.name)) {
        throw new RangeError(`ParamArena: the name '${t.name}' is used twice: names must be unique.`);
      }
      const offset = bytes;
      bytes = Math.ceil((offset + t.size * 4) / ARENA_ALIGNMENT) * ARENA_ALIGNMENT;
      names.add(t.name);
      return { name: t.name, size: t.size, offset };
    });
    const max = Math.min(device.limits.maxBufferSize, 2 ** 53);
    if (bytes > max) {
      throw new RangeError(
        `ParamArena: ${bytes} bytes exceed the device's maxBufferSize (${max}): ` +
        'request a higher limit, or split the model into several arenas.',
      );
    }
    const usage = STORAGE | COPY_SRC | COPY_DST;
    this.params = device.createBuffer({ label: `${label}.params`, size: bytes, usage });
    this.grads = device.createBuffer({ label: `${label}.grads`, size: bytes, usage });
    this.tensors = layout.map(({ name, size, offset }) => {
      const t: ArenaTensor = Object.freeze({
        name, size, offset,
        param: Object.freeze({ buffer: this.params, offset, size: size * 4 }),
        grad: Object.freeze({ buffer: this.grads, offset, size: size * 4 }),
      });
      this.#byName.set(name, t);
      return t;
    });
  }

  /** The tensor called `name`; throws a RangeError naming the known tensors otherwise. */
  tensor(name: string): ArenaTensor {
    const t = this.#byName.get(name);
    if (!t) throw new RangeError(`ParamArena has no tensor '${name}'. It has: ${[...this.#byName.keys()].join(', ')}.`);
    return t;
  }

  /** `{ param, grad, name }` for every tensor, in order, for `new RMSProp(device, arena.specs())`. */
  specs(): ParamSpec[] {
    return this.tensors.map((t) => {
      const spec: ParamSpec = { param: t.param, grad: t.grad, name: t.name };
      Object.defineProperty(spec, ARENA, { value: this });
      return spec;
    });
  }

  /** Destroys both buffers. */
  destroy(): void {
    this.params.destroy();
    this.grads.destroy();
  }
}
