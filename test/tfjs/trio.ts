/**
 * One tensor trained three ways from the same values with the same gradient tensors: by the WebGPU
 * RMSProp (`tfjsRMSProp`), by `tf.train.rmsprop` on the same backend, and by the CPU twin
 * (`ReferenceRMSProp`, rounding as this adapter does), so that a test can change the variable
 * between steps (assign, share, read) and check all three still agree.
 */
import { expect } from 'vitest';
import { ReferenceRMSProp } from '../../src/index.js';
import { tfjsRMSProp, type TfjsRMSPropConfig, type WebGPURMSProp } from '../../src/tfjs/index.js';
import { expectUlps, MULTIPLY_ADD } from '../gpu/harness.js';
import { TFJS_ULPS } from './fit-comparison.js';
import { agreement, readThroughOp, tf } from './harness.js';

export { TFJS_ULPS };


let count = 0;

export class Trio {
  readonly ours: tf.Variable;
  readonly theirs: tf.Variable;
  readonly optimizer: WebGPURMSProp;
  readonly reference: tf.Optimizer;
  readonly twinParam: Float32Array<ArrayBuffer>;
  readonly #twinGrad: Float32Array<ArrayBuffer>;
  readonly #twin: ReferenceRMSProp;
  readonly #floor: Float32Array;

  /** `make(values)` makes the variables' initial tensors (default: CPU-resident `tf.tensor`). */
  constructor(initial: Float32Array, config: TfjsRMSPropConfig = {}, make: (values: Float32Array) => tf.Tensor = (v) => tf.tensor(v)) {
    const id = count++;
    const a = make(initial), b = make(initial);
    this.ours = tf.variable(a, true, `trio${id}/ours`);
    this.theirs = tf.variable(b, true, `trio${id}/theirs`);
    tf.dispose([a, b]);
    this.optimizer = tfjsRMSProp(tf, config);
    const o = this.optimizer.options;
    this.reference = tf.train.rmsprop(o.lr, o.alpha, o.momentum, o.eps, o.centered);
    this.twinParam = initial.slice();
    this.#twinGrad = new Float32Array(initial.length);
    this.#twin = new ReferenceRMSProp([{ param: this.twinParam, grad: this.#twinGrad, name: this.ours.name }], o, { multiplyAdd: MULTIPLY_ADD });
    this.#floor = initial.map(Math.abs);
  }

  /** One step with gradient `g` for all three (the same tensor for both TF.js optimizers: `grad(g)`). */
  step(g: Float32Array, grad: (g: Float32Array) => tf.Tensor = (x) => tf.tensor(x)): void {
    const t = grad(g);
    this.optimizer.applyGradients({ [this.ours.name]: t });
    this.reference.applyGradients({ [this.theirs.name]: t });
    t.dispose();
    this.#twinGrad.set(g);
    this.#twin.step();
  }

  /** Gives both variables (and the twin) new values, as `v.assign(t)` does. */
  assign(values: Float32Array): void {
    const a = tf.tensor(values), b = tf.tensor(values);
    this.ours.assign(a);
    this.theirs.assign(b);
    tf.dispose([a, b]);
    this.twinParam.set(values);
    this.#floor.forEach((_, i) => { this.#floor[i] = Math.max(this.#floor[i]!, Math.abs(values[i]!)); });
  }

  /** The three agree: ours is the twin (to this adapter's tolerance) and TF.js's within TFJS_ULPS. */
  async check(what: string, read: (v: tf.Variable) => Promise<Float32Array> = readThroughOp): Promise<Float32Array> {
    const ours = await read(this.ours), theirs = await readThroughOp(this.theirs);
    expectUlps(ours, this.twinParam, `${what}: against the CPU twin`);
    theirs.forEach((x, i) => { this.#floor[i] = Math.max(this.#floor[i]!, Math.abs(x)); });
    const e = agreement(ours, theirs, this.#floor);
    expect(e.ulps, `${what}: against tf.train.rmsprop, element ${e.at}`).toBeLessThanOrEqual(TFJS_ULPS);
    return ours;
  }

  dispose(): void {
    this.optimizer.dispose();
    this.reference.dispose();
    tf.dispose([this.ours, this.theirs]);
  }
}
