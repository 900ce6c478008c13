// The consumer's training check, shared by every way of loading the package (Node, Deno, a plain
// browser module, a Vite app): it imports the package by name, as an app does, trains two tensors a
// few steps on the GPU and the same steps on the package's CPU reference, and reports how far apart
// they are. Plain JavaScript: what an app without TypeScript or a bundler writes.
import { RMSProp, ReferenceRMSProp, detectMultiplyAdd, presets } from 'webgpu-rmsprop';

const STEPS = 5;
const SIZES = [1037, 3]; // not multiples of 4: the shader's vec4 body and its scalar tail

/** A deterministic generator (mulberry32) of numbers in [-1, 1). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  };
}

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
  const random = rng(42);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const tensors = SIZES.map((size, i) => {
    const initial = Float32Array.from({ length: size }, random);
    const param = device.createBuffer({ label: `consumer.param${i}`, size: size * 4, usage });
    const grad = device.createBuffer({ label: `consumer.grad${i}`, size: size * 4, usage });
    device.queue.writeBuffer(param, 0, initial);
    return { size, param, grad, cpu: { param: initial.slice(), grad: new Float32Array(size), name: `t${i}` } };
  });
  const options = { ...presets.pytorch, lr: 0.01, momentum: 0.9, centered: true };
  const optimizer = new RMSProp(device, tensors.map((t) => ({ param: t.param, grad: t.grad, name: t.cpu.name })), options);
  const multiplyAdd = await detectMultiplyAdd(device);
  const reference = new ReferenceRMSProp(tensors.map((t) => t.cpu), options, { multiplyAdd });
  for (let step = 0; step < STEPS; step++) {
    for (const t of tensors) {
      for (let i = 0; i < t.size; i++) t.cpu.grad[i] = random() * 10 ** ((i % 5) - 2);
      device.queue.writeBuffer(t.grad, 0, t.cpu.grad);
    }
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
  const initial = rng(42);
  for (let i = 0; i < SIZES[0]; i++) if (gpu[0][i] !== Math.fround(initial())) changed++;
  const error = await device.popErrorScope();
  optimizer.destroy();
  for (const t of tensors) { t.param.destroy(); t.grad.destroy(); }
  return { steps: optimizer.stepCount, compared, changed, worstUlps, multiplyAdd, validationError: error ? error.message : null };
}
