/**
 * `npm run bench:probe`: what bounds RMSProp's step on this adapter (WEBGPU_ADAPTER). Times, on 16Mi
 * elements (fewer where the device's storage binding limit cannot hold three state slots of that many), the
 * library's plain step against kernels with the same memory traffic and less arithmetic, a
 * compute copy, copyBufferToBuffer, another workgroup size, one f32 per invocation instead of
 * one vec4, and the centered momentum step written inline against the library's. The
 * findings for SwiftShader are in docs/benchmarks.md.
 */
import { performance } from 'node:perf_hooks';
import { RMSProp, presets } from '../src/index.js';
import { adapterLine, requestNodeAdapter } from '../demo/node/dawn.js';
import { GpuTimer, median } from './timing.js';
import probeWgsl from './probe.wgsl?raw';

/** Elements per stream: 16Mi, or fewer where the centered kernel's three state slots (one binding) would not fit. */
const WANTED = 16 * 1024 * 1024;
const USAGE = 0x80 | 0x04 | 0x08;

/** The elements the probe can use on a device: its widest binding (the centered kernel's state) holds 3 f32 per element. */
function probeElements(limits: { maxStorageBufferBindingSize: number; maxBufferSize: number }): number {
  const most = Math.floor(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / (3 * 4) / 1024) * 1024;
  return Math.min(WANTED, most);
}

async function main(): Promise<void> {
  const found = await requestNodeAdapter();
  if (!found) throw new Error('no WebGPU adapter (see demo/node/dawn.ts for WEBGPU_ADAPTER)');
  console.log(adapterLine(found));
  const { adapter } = found;
  const N = probeElements(adapter.limits);
  if (N < WANTED) {
    console.log(`${N} elements per stream, not ${WANTED}: the centered kernel binds 3 × 4 bytes per element in one binding, ` +
      `and maxStorageBufferBindingSize is ${adapter.limits.maxStorageBufferBindingSize} bytes here`);
  }
  const timestamps = adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({
    label: 'bench probe',
    requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
    requiredFeatures: timestamps ? ['timestamp-query'] : [],
  });
  const timer = new GpuTimer(device, timestamps, () => performance.now());
  const buffer = (label: string, fill: number) => {
    const b = device.createBuffer({ label: `probe.${label}`, size: N * 4, usage: USAGE });
    device.queue.writeBuffer(b, 0, new Float32Array(N).fill(fill));
    return b;
  };
  const p = buffer('p', 0.5), g = buffer('g', 0.01), v = buffer('v', 0);
  const state = device.createBuffer({ label: 'probe.state', size: 3 * N * 4, usage: USAGE }); // zeros
  const hyper = device.createBuffer({ label: 'probe.hyper', size: 16, usage: 0x40 | 0x08 });
  const h = new ArrayBuffer(16);
  new Uint32Array(h, 0, 1)[0] = N / 4;
  new Float32Array(h, 4, 3).set([1e-3, 0.9, 1e-7]);
  device.queue.writeBuffer(hyper, 0, h);
  const module = device.createShaderModule({ label: 'probe.wgsl', code: probeWgsl });

  const kernel = (entryPoint: 'stream5' | 'stream5Scalar' | 'copy' | 'centeredMomentum', math: number, workgroup: number) => {
    const pipeline = device.createComputePipeline({
      label: `probe.${entryPoint}`, layout: 'auto',
      compute: { module, entryPoint, constants: { WORKGROUP_SIZE: workgroup, ...(entryPoint.startsWith('stream5') ? { MATH: math } : {}) } },
    });
    const entries = [{ binding: 0, resource: { buffer: hyper } }, { binding: 1, resource: { buffer: p } }, { binding: 2, resource: { buffer: g } }];
    if (entryPoint.startsWith('stream5')) entries.push({ binding: 3, resource: { buffer: v } });
    if (entryPoint === 'centeredMomentum') entries.push({ binding: 3, resource: { buffer: state } });
    const bindGroup = device.createBindGroup({ label: 'probe', layout: pipeline.getBindGroupLayout(0), entries });
    const groups = Math.ceil((entryPoint === 'stream5Scalar' ? N : N / 4) / workgroup);
    const [x, y] = groups > 65535 ? [65535, Math.ceil(groups / 65535)] : [groups, 1];
    return () => {
      const encoder = device.createCommandEncoder({ label: 'probe' });
      const pass = encoder.beginComputePass({ label: 'probe' });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y);
      pass.end();
      device.queue.submit([encoder.finish()]);
    };
  };
  // Every case, then timed in turn batch by batch (5 rounds), so that load from elsewhere on the
  // machine falls on all of them alike; the median per case.
  const cases: { name: string; bytes: number; run: () => void }[] = [];
  cases.push({ name: 'copyBufferToBuffer (read+write)', bytes: 8, run: () => {
    const e = device.createCommandEncoder({ label: 'probe.copy' });
    e.copyBufferToBuffer(g, 0, p, 0, N * 4);
    device.queue.submit([e.finish()]);
  } });
  cases.push({ name: 'compute copy p = g (vec4 per invocation, wg 256)', bytes: 8, run: kernel('copy', 0, 256) });
  const optimizer = new RMSProp(device, [{ param: p, grad: g, name: 'p' }], presets.tfjs);
  cases.push({ name: 'library RMSProp step, plain (presets.tfjs)', bytes: 20, run: () => optimizer.step() });
  const centered = new RMSProp(device, [{ param: p, grad: g, name: 'p' }], { ...presets.tfjs, momentum: 0.9, centered: true });
  cases.push({ name: 'library RMSProp step, momentum 0.9 + centered', bytes: 36, run: () => centered.step() });
  cases.push({ name: 'inline momentum 0.9 + centered, vec4, wg 256', bytes: 36, run: kernel('centeredMomentum', 0, 256) });
  for (const [math, what] of [[0, 'p += g, v += g*g'], [1, 'RMSProp plain: sqrt, divide'], [2, 'RMSProp plain with inverseSqrt']] as const) {
    for (const wg of [256, 64]) cases.push({ name: `5 streams, ${what}, vec4, wg ${wg}`, bytes: 20, run: kernel('stream5', math, wg) });
    cases.push({ name: `5 streams, ${what}, f32, wg 256`, bytes: 20, run: kernel('stream5Scalar', math, 256) });
  }
  console.log(`${N} elements; timing: ${timestamps ? 'GPU timestamps' : 'wall clock'}; median of 5 rounds\n`);
  device.pushErrorScope('validation');
  const plans: { k: number; times: number[] }[] = [];
  for (const c of cases) {
    c.run();
    await device.queue.onSubmittedWorkDone();
    const first = await timer.time(c.run);
    plans.push({ k: Math.max(1, Math.round(250 / (first.gpuMs ?? first.wallMs))), times: [] });
  }
  for (let round = 0; round < 5; round++) {
    for (const [i, c] of cases.entries()) {
      const { k, times } = plans[i]!;
      const t = await timer.time(() => { for (let j = 0; j < k; j++) c.run(); });
      times.push((t.gpuMs ?? t.wallMs) / k);
    }
  }
  const error = await device.popErrorScope();
  if (error) throw new Error(`WebGPU validation error in the probe: ${error.message}`);
  cases.forEach((c, i) => {
    const times = plans[i]!.times, ms = median(times);
    const rate = (c.bytes * N) / (ms * 1e6);
    console.log(`${c.name.padEnd(52)} ${ms.toFixed(1).padStart(7)} ms (${Math.min(...times).toFixed(0)}-${Math.max(...times).toFixed(0)})  ${rate.toFixed(2).padStart(6)} GB/s`);
  });
  optimizer.destroy();
  centered.destroy();
  timer.destroy();
  device.destroy();
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
