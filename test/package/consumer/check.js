// The consumer's training check, shared by every way of loading the package (Node, Deno, a plain
// browser module, a Vite app): it imports the package by name, as an app does, trains two tensors a
// few steps on the GPU and the same steps on the package's CPU reference, and reports how far apart
// they are. Plain JavaScript: what an app without TypeScript or a bundler writes.
import { RMSProp, ReferenceRMSProp, detectMultiplyAdd, presets } from 'webgpu-rmsprop';
import { OPTIONS, SIZES, STEPS, trainingData } from './data.js';

/** Distance in ULPs between two f32 values (0 when their bits are equal). */
function ulps(a, b) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat32(0, a);
  view.setFloat32(4, b);
  const order = (u) => (u & 0x80000000 ? 0x80000000 - (u & 0x7fffffff) : 0x80000000 + u);
  const x = view.getUint32(0), y = view.getUint32(4);
  if (x === y) return 0;
  if (Number.isNaN(a) || Number.isNaN(b)) return Infinity;
  return Math.abs(order(x) - order(y));
}

/**
 * The adapter in words, for the report (vendor, architecture, device, description).
 * @param {GPUAdapterInfo} info
 */
export function describe(info) {
  return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter';
}

/**
 * Trains on `device` and on the CPU reference. Returns the adapter-independent facts a test checks.
 * @param {GPUDevice} device
 */
export async function check(device) {
  device.pushErrorScope('validation');
  const { initial, grads } = trainingData();
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const tensors = SIZES.map((size, i) => {
    const param = device.createBuffer({ label: `consumer.param${i}`, size: size * 4, usage });
    const grad = device.createBuffer({ label: `consumer.grad${i}`, size: size * 4, usage });
    device.queue.writeBuffer(param, 0, initial[i]);
    return { size, param, grad, cpu: { param: initial[i].slice(), grad: new Float32Array(size), name: `t${i}` } };
  });
  const options = { ...presets.pytorch, ...OPTIONS };
  const optimizer = new RMSProp(device, tensors.map((t) => ({ param: t.param, grad: t.grad, name: t.cpu.name })), options);
  const multiplyAdd = await detectMultiplyAdd(device);
  const reference = new ReferenceRMSProp(tensors.map((t) => t.cpu), options, { multiplyAdd });
  for (let step = 0; step < STEPS; step++) {
    tensors.forEach((t, i) => {
      t.cpu.grad.set(grads[step][i]);
      device.queue.writeBuffer(t.grad, 0, t.cpu.grad);
    });
    const encoder = device.createCommandEncoder({ label: `consumer.step${step}` });
    optimizer.step(encoder);
    device.queue.submit([encoder.finish()]);
    reference.step();
  }
  const gpu = await optimizer.readParams();
  let worstUlps = 0, compared = 0, changed = 0;
  tensors.forEach((t, k) => {
    for (let i = 0; i < t.size; i++) {
      worstUlps = Math.max(worstUlps, ulps(gpu[k][i], t.cpu.param[i]));
      compared++;
    }
  });
  for (let i = 0; i < SIZES[0]; i++) if (gpu[0][i] !== initial[0][i]) changed++;
  const error = await device.popErrorScope();
  optimizer.destroy();
  for (const t of tensors) { t.param.destroy(); t.grad.destroy(); }
  // The GPU's parameters as bit patterns: the test replays the steps on the repository's twin and
  // compares them at the adapter's tolerance (its bound needs the whole trajectory, not only the end).
  const bits = gpu.map((p) => Array.from(new Uint32Array(p.buffer, p.byteOffset, p.length)));
  return { steps: optimizer.stepCount, compared, changed, worstUlps, multiplyAdd, validationError: error ? error.message : null, bits };
}
