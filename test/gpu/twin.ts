/**
 * A GPU optimizer and its CPU twin (`ReferenceRMSProp`) over the same starting parameters, fed the
 * same gradients, stepped together and compared.
 */
import { presets, RMSProp, ReferenceRMSProp, type ParamSpec, type RMSPropConfig, type RMSPropOptions, type RMSPropState } from '../../src/index.js';
import { MULTIPLY_ADD, expectUlps, randomGrads, randomParams, rng, upload, write, type Placed } from './harness.js';

/**
 * Every variant of the rule: each combination of centered, momentum (0 / 0.9), lrInMomentum,
 * epsMode, maximize and weightDecay (0 / 0.01) over PyTorch's defaults, then TF1's preset
 * (initialScale 1) with and without momentum and centering.
 */
export const VARIANTS: readonly { readonly name: string; readonly options: Partial<RMSPropOptions> }[] = (() => {
  const out: { name: string; options: Partial<RMSPropOptions> }[] = [];
  for (const centered of [false, true]) {
    for (const momentum of [0, 0.9]) {
      for (const lrInMomentum of [false, true]) {
        for (const epsMode of ['outside', 'inside'] as const) {
          for (const maximize of [false, true]) {
            for (const weightDecay of [0, 0.01]) {
              const flags = Object.entries({ centered, lrInMomentum, maximize }).filter(([, on]) => on).map(([k]) => k);
              const name = [`momentum ${momentum}`, `eps ${epsMode}`, `weightDecay ${weightDecay}`, ...flags].join(', ');
              out.push({ name, options: { centered, momentum, lrInMomentum, epsMode, maximize, weightDecay } });
            }
          }
        }
      }
    }
  }
  for (const momentum of [0, 0.9]) {
    for (const centered of [false, true]) {
      out.push({ name: `presets.tf1 (initialScale 1), momentum ${momentum}${centered ? ', centered' : ''}`, options: { ...presets.tf1, momentum, centered } });
    }
  }
  return out;
})();

/** Sizes of the variant tests: a body with a tail (4 * 257 + 3), a lone tail (3), an exact vec4 multiple (64). */
export const VARIANT_SIZES = [1031, 3, 64];
/** Steps of the variant tests. */
export const VARIANT_STEPS = 10;

export interface TwinTensor {
  readonly name: string;
  readonly size: number;
  /** Where the parameter lives on the GPU (a buffer of its own unless given). */
  readonly param: Placed;
  readonly grad: Placed;
  /** The CPU twin's parameter and gradient. */
  readonly cpuParam: Float32Array;
  readonly cpuGrad: Float32Array;
}

export class Twin {
  readonly gpu: RMSProp;
  readonly cpu: ReferenceRMSProp;
  readonly random: () => number;
  #steps = 0;
  /**
   * Per element, the largest magnitude the CPU's parameter (and each state slot) has had so far:
   * the floor of its comparison (see `ulpError`), since an error made while the value was large
   * stays as an absolute error when later steps cancel it down.
   */
  readonly #paramScale: Float32Array[];
  #stateScale: Map<string, Float32Array> | undefined;
  /** Track the state's scale after every step (a copy of the CPU state per step: small tensors only). */
  readonly #trackState: boolean;

  constructor(readonly device: GPUDevice, readonly tensors: readonly TwinTensor[], readonly options: RMSPropConfig, seed = 1) {
    this.random = rng(seed ^ 0x5eed);
    const specs: ParamSpec[] = tensors.map((t) => ({ name: t.name, param: t.param.binding, grad: t.grad.binding }));
    this.gpu = new RMSProp(device, specs, options);
    this.cpu = new ReferenceRMSProp(tensors.map((t) => ({ name: t.name, param: t.cpuParam, grad: t.cpuGrad })), options, { multiplyAdd: MULTIPLY_ADD });
    this.#paramScale = tensors.map((t) => t.cpuParam.map(Math.abs));
    this.#trackState = tensors.reduce((n, t) => n + t.size, 0) <= 1 << 20;
    if (this.#trackState) this.#stateScale = new Map();
  }

  /**
   * Tensors of the given sizes, each parameter and gradient in a buffer of its own (parameters
   * uniform in [-1, 1), no gradients yet).
   */
  static ofSizes(device: GPUDevice, sizes: readonly number[], options: RMSPropConfig, seed = 1): Twin {
    const random = rng(seed);
    const tensors = sizes.map((size, i): TwinTensor => {
      const values = randomParams(size, random);
      return {
        name: `t${i}.size${size}`,
        size,
        param: upload(device, values, { label: `test.param[${i}]` }),
        grad: upload(device, new Float32Array(size), { label: `test.grad[${i}]` }),
        cpuParam: values.slice(),
        cpuGrad: new Float32Array(size),
      };
    });
    return new Twin(device, tensors, options, seed);
  }

  /** Gives both the same gradients: `grads[i]` for tensor i, else fresh random ones. */
  setGrads(grads?: readonly Float32Array[]): void {
    this.tensors.forEach((t, i) => {
      const g = grads?.[i] ?? randomGrads(t.size, this.random);
      t.cpuGrad.set(g);
      write(this.device, t.grad.buffer, t.grad.binding.offset, g);
    });
  }

  /** One step of each (the GPU one submitted, or recorded into `encoder`). */
  step(encoder?: GPUCommandEncoder): void {
    this.gpu.step(encoder);
    this.cpuStep();
  }

  /** One step of the CPU twin only (for GPU steps recorded by other means). */
  cpuStep(): void {
    this.cpu.step();
    this.#steps++;
    this.tensors.forEach((t, i) => raiseScale(this.#paramScale[i]!, t.cpuParam));
    if (this.#trackState) void this.cpu.stateDict().then((s) => this.#raiseStateScale(s));
  }

  #raiseStateScale(state: RMSPropState): void {
    state.tensors.forEach((t) => {
      for (const slot of SLOTS) {
        const values = t[slot];
        if (!values) continue;
        const key = `${t.name}.${slot}`;
        const scale = this.#stateScale!.get(key) ?? new Float32Array(values.length);
        raiseScale(scale, values);
        this.#stateScale!.set(key, scale);
      }
    });
  }

  /** The comparison floor of `name`'s state `slot` (see #paramScale). */
  stateFloor(name: string, slot: Slot): Float32Array | undefined {
    return this.#stateScale?.get(`${name}.${slot}`);
  }

  set lr(value: number) {
    this.gpu.lr = value;
    this.cpu.lr = value;
  }

  /** Asserts every GPU parameter is within tolerance of its CPU twin. */
  async expectParams(what = `step ${this.#steps}`, tolerance?: number): Promise<void> {
    const params = await this.gpu.readParams();
    params.forEach((p, i) => expectUlps(p, this.tensors[i]!.cpuParam, `${what}: '${this.tensors[i]!.name}' param`, { tolerance, floor: this.#paramScale[i]! }));
  }

  /** Asserts the GPU state dict matches the CPU twin's: step, options, and every slot within tolerance. */
  async expectState(what = `step ${this.#steps}`): Promise<RMSPropState> {
    const [gpu, cpu] = await Promise.all([this.gpu.stateDict(), this.cpu.stateDict()]);
    expectStatesClose(gpu, cpu, what, (name, slot) => this.stateFloor(name, slot));
    return gpu;
  }

  /** `steps` steps of fresh gradients, comparing the parameters after each. */
  async run(steps: number): Promise<void> {
    for (let s = 0; s < steps; s++) {
      this.setGrads();
      this.step();
      await this.expectParams();
    }
  }

  destroy(): void {
    this.gpu.destroy();
    for (const t of this.tensors) {
      t.param.buffer.destroy();
      t.grad.buffer.destroy();
    }
  }
}

const SLOTS = ['squareAvg', 'gradAvg', 'momentumBuffer'] as const;
type Slot = (typeof SLOTS)[number];

/** Raises each `scale[i]` to at least |values[i]|. */
function raiseScale(scale: Float32Array, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]!);
    if (a > scale[i]!) scale[i] = a;
  }
}

/**
 * Asserts two state dicts agree: step, groups and names exactly, slots within tolerance (each
 * element floored at `floor(name, slot)[i]` where given, see `ulpError`).
 */
export function expectStatesClose(
  gpu: RMSPropState,
  cpu: RMSPropState,
  what: string,
  floor: (name: string, slot: Slot) => Float32Array | undefined = () => undefined,
): void {
  if (gpu.step !== cpu.step) throw new Error(`${what}: step ${gpu.step} vs ${cpu.step}`);
  expectSameShape(gpu, cpu, what);
  gpu.tensors.forEach((t, i) => {
    const c = cpu.tensors[i]!;
    for (const slot of SLOTS) {
      const a = t[slot], b = c[slot];
      if ((a === undefined) !== (b === undefined)) throw new Error(`${what}: '${t.name}'.${slot} present on one side only`);
      const f = floor(t.name, slot);
      if (a && b) expectUlps(a, b, `${what}: '${t.name}'.${slot}`, f ? { floor: f } : {});
    }
  });
}

function expectSameShape(a: RMSPropState, b: RMSPropState, what: string): void {
  const shape = (s: RMSPropState) => JSON.stringify({ groups: s.groups, tensors: s.tensors.map((t) => [t.name, t.size]) });
  if (shape(a) !== shape(b)) throw new Error(`${what}: state shapes differ:\n${shape(a)}\n${shape(b)}`);
}
