/**
 * A GPU optimizer and its CPU twin (`cpuTwin`: the reference, with the bound of how far a conformant
 * GPU may be from it) over the same starting parameters, fed the same gradients, stepped together
 * and compared at the adapter's tolerance (harness TOLERANCE): parameters after each step, every
 * state slot when asked.
 */
import { RMSProp, type ParamSpec, type RMSPropConfig, type RMSPropState, type StepOptions } from '../../src/index.js';
import { VARIANT_SIZES, VARIANT_STEPS, VARIANTS } from '../../demo/check/variants.js';
import {
  cpuTwin, expectMatchesTwin, expectNormClose, randomGrads, randomParams, rng, upload, write, type CheckedReference, type Placed,
} from './harness.js';

export { VARIANT_SIZES, VARIANT_STEPS, VARIANTS };

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
  readonly cpu: CheckedReference;
  readonly random: () => number;
  #steps = 0;

  constructor(readonly device: GPUDevice, readonly tensors: readonly TwinTensor[], readonly options: RMSPropConfig, seed = 1) {
    this.random = rng(seed ^ 0x5eed);
    const specs: ParamSpec[] = tensors.map((t) => ({ name: t.name, param: t.param.binding, grad: t.grad.binding }));
    this.gpu = new RMSProp(device, specs, options);
    this.cpu = cpuTwin(tensors.map((t) => ({ name: t.name, param: t.cpuParam, grad: t.cpuGrad })), options);
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

  /** One step of each (the GPU one submitted, or recorded into `encoder`), with the same step options. */
  step(encoder?: GPUCommandEncoder, options?: StepOptions): void {
    this.gpu.step(encoder, options);
    this.cpuStep(options);
  }

  /** One step of the CPU twin only (for GPU steps recorded by other means). */
  cpuStep(options?: StepOptions): void {
    this.cpu.step(options);
    this.#steps++;
  }

  set lr(value: number) {
    this.gpu.lr = value;
    this.cpu.lr = value;
  }

  /** Asserts every GPU parameter matches its CPU twin at the adapter's tolerance. */
  async expectParams(what = `step ${this.#steps}`): Promise<void> {
    await expectMatchesTwin(this.gpu, this.cpu, what, { state: false });
  }

  /** Asserts the GPU parameters and state dict match the CPU twin's: step, and every slot at the adapter's tolerance. */
  async expectState(what = `step ${this.#steps}`): Promise<RMSPropState> {
    await expectMatchesTwin(this.gpu, this.cpu, what);
    return this.gpu.stateDict();
  }

  /** The GPU's last gradient norm against the twin's (clipGradNorm, skipNonFinite). */
  async expectNorm(what = `norm at step ${this.#steps}`): Promise<void> {
    await expectNormClose(this.gpu, this.cpu, what);
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
