// Type-checked in the temporary consumer project against the packed package's .d.ts files, with
// strict settings (tsconfig.nodenext.json, tsconfig.bundler.json). Each @ts-expect-error must
// meet a real error: if the package's types resolved to `any`, they would be unused, and tsc fails.
import {
  RMSProp,
  ReferenceRMSProp,
  ParamArena,
  presets,
  type ParamSpec,
  type RMSPropOptions,
  type RMSPropState,
  encodeHalves,
  safetensorsToParams,
  stateDictToSafetensors,
} from 'webgpu-rmsprop';

export async function train(device: GPUDevice, weights: GPUBuffer, grads: GPUBuffer): Promise<Float32Array> {
  const spec: ParamSpec = { param: weights, grad: grads, name: 'w' };
  const options: Partial<RMSPropOptions> = { ...presets.keras, lr: 3e-4, momentum: 0.9 };
  const optimizer = new RMSProp(device, [spec], options);
  const encoder = device.createCommandEncoder();
  optimizer.step(encoder);
  device.queue.submit([encoder.finish()]);
  optimizer.lr = 1e-4;
  const state: RMSPropState = await optimizer.stateDict();
  optimizer.loadStateDict(state);
  const [w] = await optimizer.readParams();
  optimizer.destroy();
  if (!w) throw new Error('one tensor in, one out');
  return w;
}

/** What the package hands back goes straight into writeBuffer, as resuming from a checkpoint does. */
export async function resume(device: GPUDevice, optimizer: RMSProp, weights: GPUBuffer, halfGrads: GPUBuffer): Promise<void> {
  const bytes = stateDictToSafetensors(await optimizer.stateDict(), { params: await optimizer.readParams() });
  const [w] = safetensorsToParams(bytes);
  if (w) device.queue.writeBuffer(weights, 0, w);
  const [read] = await optimizer.readParams();
  if (read) device.queue.writeBuffer(weights, 0, read);
  device.queue.writeBuffer(halfGrads, 0, encodeHalves(new Float32Array([0.5, -2]), 'f16'));
}

export function onTheCpu(): number {
  const w = new Float32Array([1, 2]);
  const cpu = new ReferenceRMSProp([{ param: w, grad: new Float32Array([0.5, -0.5]) }], { lr: 0.01 });
  cpu.step();
  return cpu.stepCount;
}

export function misuse(device: GPUDevice, buffer: GPUBuffer): void {
  // @ts-expect-error lr is a number
  new RMSProp(device, [{ param: buffer, grad: buffer }], { lr: '0.01' });
  // @ts-expect-error epsMode is 'outside' or 'inside'
  new RMSProp(device, [{ param: buffer, grad: buffer }], { epsMode: 'sideways' });
  // @ts-expect-error a param is a GPUBuffer or GPUBufferBinding, not a Float32Array
  new RMSProp(device, [{ param: new Float32Array(4), grad: buffer }]);
  // @ts-expect-error step takes an encoder, not a number
  new RMSProp(device, [{ param: buffer, grad: buffer }]).step(1);
  // @ts-expect-error the arena is a class: it needs `new`
  ParamArena(device, []);
}
