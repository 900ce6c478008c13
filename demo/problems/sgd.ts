/**
 * Plain SGD (`p -= lr * g`), the baseline the demo trains beside RMSProp: `GpuSgd` in WGSL
 * (demo/shaders/sgd.wgsl), with the same `step(encoder)` / `lr` surface as the library's
 * `RMSProp`, and `CpuSgd`, its twin on Float32Arrays, with `ReferenceRMSProp`'s.
 */
import type { ParamSpec, ReferenceParamSpec } from '../../src/index.js';
import shaderSource from '../shaders/sgd.wgsl?raw';

const WORKGROUP_SIZE = 64;
const UNIFORM = 0x40, COPY_DST = 0x08;

function checkLr(lr: number): void {
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr <= 0) {
    throw new RangeError(`SGD lr must be a finite number > 0, got ${String(lr)}.`);
  }
}

/** One range of a buffer: the whole buffer, or a binding's slice of it. */
function range(x: GPUBuffer | GPUBufferBinding): { buffer: GPUBuffer; offset: number; size: number } {
  if ('buffer' in x) return { buffer: x.buffer, offset: x.offset ?? 0, size: x.size ?? x.buffer.size - (x.offset ?? 0) };
  return { buffer: x, offset: 0, size: x.size };
}

/**
 * SGD on WebGPU: one dispatch per parameter range per step. Give it a ParamArena's whole buffers
 * (`{ param: arena.params, grad: arena.grads }`) and a step is one dispatch for the whole model
 * (the arena's zero padding has zero gradient and stays zero).
 *
 * @example
 * ```ts
 * const sgd = new GpuSgd(device, [{ param: arena.params, grad: arena.grads }], 0.1);
 * sgd.step(encoder); // after the backward pass in the same encoder
 * ```
 */
export class GpuSgd {
  readonly device: GPUDevice;
  readonly #uniforms: GPUBuffer[] = [];
  readonly #dispatches: { bindGroup: GPUBindGroup; workgroups: number }[] = [];
  readonly #pipeline: GPUComputePipeline;
  #lr: number;
  #dirty = true;
  #destroyed = false;

  constructor(device: GPUDevice, params: readonly Pick<ParamSpec, 'param' | 'grad'>[], lr: number) {
    checkLr(lr);
    this.device = device;
    this.#lr = lr;
    const module = device.createShaderModule({ label: 'Sgd.shader', code: shaderSource });
    this.#pipeline = device.createComputePipeline({
      label: 'Sgd.pipeline',
      layout: 'auto',
      compute: { module, entryPoint: 'main', constants: { WORKGROUP_SIZE } },
    });
    params.forEach((spec, index) => {
      const p = range(spec.param), g = range(spec.grad);
      if (p.size !== g.size) throw new RangeError(`GpuSgd: params[${index}] has ${p.size} parameter bytes but ${g.size} gradient bytes.`);
      const count = p.size / 4;
      const uniform = device.createBuffer({ label: `Sgd.hyper[${index}]`, size: 16, usage: UNIFORM | COPY_DST });
      this.#uniforms.push(uniform);
      const bindGroup = device.createBindGroup({
        label: `Sgd.bindGroup[${index}]`,
        layout: this.#pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: uniform } },
          { binding: 1, resource: p },
          { binding: 2, resource: g },
        ],
      });
      this.#dispatches.push({ bindGroup, workgroups: Math.ceil(count / WORKGROUP_SIZE) });
      const data = new ArrayBuffer(16);
      new Uint32Array(data)[1] = count;
      device.queue.writeBuffer(uniform, 0, data);
    });
  }

  /** The learning rate; a new value is written to the GPU at the next `step()`. */
  get lr(): number {
    return this.#lr;
  }

  set lr(value: number) {
    checkLr(value);
    this.#lr = value;
    this.#dirty = true;
  }

  /** Records one step into `encoder`, or submits one of its own. */
  step(encoder?: GPUCommandEncoder): void {
    if (this.#destroyed) throw new Error('GpuSgd.step() after destroy(): create a new one.');
    if (this.#dirty) {
      for (const u of this.#uniforms) this.device.queue.writeBuffer(u, 0, new Float32Array([this.#lr]));
      this.#dirty = false;
    }
    const commands = encoder ?? this.device.createCommandEncoder({ label: 'Sgd.step' });
    const pass = commands.beginComputePass({ label: 'Sgd.step' });
    pass.setPipeline(this.#pipeline);
    for (const d of this.#dispatches) {
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.workgroups);
    }
    pass.end();
    if (!encoder) this.device.queue.submit([commands.finish()]);
  }

  /** Frees its uniform buffers (the parameters are the caller's). Safe to call twice. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const u of this.#uniforms) u.destroy();
  }
}

/**
 * SGD on the CPU, f32 as the shader rounds it: `p = p - round(lr * g)`.
 *
 * @example
 * ```ts
 * const sgd = new CpuSgd(problem.params, 0.1);
 * sgd.step(); // updates problem.params' Float32Arrays in place
 * ```
 */
export class CpuSgd {
  readonly #params: readonly ReferenceParamSpec[];
  #lr: number;

  constructor(params: readonly ReferenceParamSpec[], lr: number) {
    checkLr(lr);
    this.#params = params;
    this.#lr = lr;
  }

  get lr(): number {
    return this.#lr;
  }

  set lr(value: number) {
    checkLr(value);
    this.#lr = value;
  }

  step(): void {
    const lr = Math.fround(this.#lr);
    for (const { param, grad } of this.#params) {
      for (let i = 0; i < param.length; i++) param[i] = param[i]! - Math.fround(lr * grad[i]!);
    }
  }
}
