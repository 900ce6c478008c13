/**
 * Soak: 10,000 steps of the GPU optimizer against its CPU twin (`npm run soak`; SOAK_STEPS to
 * change the count). Two param groups with every state slot, four tensors (tails included), global
 * gradient-norm clipping and the non-finite check (the pre-pass) on every step, a
 * learning rate that changes every 100 steps, every parameter compared after every step, the whole
 * state (through checkpoint bytes) every 1000. Reports, per 1000
 * steps, the drift (the largest ULP distance of any parameter or state element from the reference;
 * on SwiftShader and lavapipe it must stay 0, elsewhere within the WGSL bound) and the number of live GPU buffers (counted by wrapping
 * device.createBuffer and each buffer's destroy), which must not grow: the optimizer allocates
 * nothing per step, and each readback frees its staging buffer; and, after a full GC, the native
 * and ArrayBuffer memory does not grow either.
 */
import { describe, expect } from 'vitest';
import { RMSProp, safetensorsToStateDict, stateDictToSafetensors, type RMSPropOptions } from '../../src/index.js';
import { compareAll } from '../../demo/check/checked-reference.js';
import { MULTIPLY_ADD, cpuTwin, gpuTest, randomGrads, randomParams, rng, upload, useDevice, write } from '../gpu/harness.js';

const gpu = useDevice();

const STEPS = Number(process.env.SOAK_STEPS ?? 10_000);
const SIZES = [4099, 1031, 64, 3];
const GROUPS: Partial<RMSPropOptions>[] = [
  { centered: true, momentum: 0.9, weightDecay: 0.01 },
  { centered: true, momentum: 0.5, lrInMomentum: true, epsMode: 'inside', initialScale: 1, maximize: true },
];
/** Optimizer-wide: the gradient pre-pass runs every step (global norm clipping, and the non-finite check). */
const GLOBAL: Partial<RMSPropOptions> = { lr: 1e-3, clipGradNorm: 100, skipNonFinite: true };

/** Counts live buffers of `device`: created minus destroyed (a second destroy of one buffer counts once). */
function countBuffers(device: GPUDevice): { live: () => number; created: () => number; restore: () => void } {
  const live = new Set<GPUBuffer>();
  let created = 0;
  const original = device.createBuffer;
  device.createBuffer = function (descriptor: GPUBufferDescriptor): GPUBuffer {
    const buffer = original.call(this, descriptor);
    live.add(buffer);
    created++;
    const destroy = buffer.destroy;
    buffer.destroy = function (): undefined {
      live.delete(buffer);
      return destroy.call(this);
    };
    return buffer;
  };
  return { live: () => live.size, created: () => created, restore: () => { device.createBuffer = original; } };
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

describe('soak', () => {
  gpuTest(`${STEPS} steps against the CPU reference: no drift, no leak`, gpu, async (device) => {
    const buffers = countBuffers(device);
    const random = rng(2026);
    const values = SIZES.map((n) => randomParams(n, random));
    const params = values.map((v, i) => upload(device, v, { label: `soak.w${i}` }));
    const grads = values.map((v, i) => upload(device, new Float32Array(v.length), { label: `soak.w${i}.grad` }));
    const specs = params.map((p, i) => ({ name: `w${i}`, param: p.buffer, grad: grads[i]!.buffer }));
    const opt = new RMSProp(device, [{ params: specs.slice(0, 2), ...GROUPS[0] }, { params: specs.slice(2), ...GROUPS[1] }], GLOBAL);
    const cpuSpecs = values.map((v, i) => ({ name: `w${i}`, param: v.slice(), grad: new Float32Array(v.length) }));
    const cpu = cpuTwin([{ params: cpuSpecs.slice(0, 2), ...GROUPS[0] }, { params: cpuSpecs.slice(2), ...GROUPS[1] }], GLOBAL);

    const started = performance.now();
    let baseline = -1, worstEver = 0, heldAt1000 = -1, held = 0;
    let window = { params: 0, state: 0 };
    const rows: string[] = [];
    for (let s = 1; s <= STEPS; s++) {
      if (s % 100 === 1) opt.lr = cpu.lr = 1e-3 * (0.55 + 0.45 * Math.cos((Math.PI * s) / STEPS)); // a cosine schedule
      cpuSpecs.forEach((c, i) => {
        const g = randomGrads(c.grad.length, random);
        c.grad.set(g);
        write(device, grads[i]!.buffer, 0, g);
      });
      opt.step();
      cpu.step();
      // Every parameter after every step, at the adapter's tolerance (0 ULPs where measured, else the WGSL bound).
      const full = s % 1000 === 0 || s === STEPS;
      const [gpuParams, cpuParams, bounds] = await Promise.all([opt.readParams(), cpu.readParams(), cpu.bounds()]);
      // Every 1000 steps the whole state too, through a checkpoint's bytes (as a user would save it).
      const [gs, cs] = full ? [safetensorsToStateDict(stateDictToSafetensors(await opt.stateDict())), await cpu.stateDict()] : [undefined, undefined];
      const { tensors, worst } = compareAll(gpuParams, cpuParams, gs, cs, bounds, gpu.tolerance);
      for (const { what, result } of tensors) {
        const key = what.endsWith(' param') ? 'params' : 'state';
        window[key] = Math.max(window[key], result.worstUlps);
      }
      if (worst.failures.length > 0) expect.fail(`step ${s} (${gpu.tolerance.label}): ${worst.failures[0]}`);
      if (s === 1) baseline = buffers.live();
      if (full) {
        expect(gs!.step).toBe(s);
        await device.queue.onSubmittedWorkDone();
        (globalThis as { gc?: () => void }).gc?.();
        const memory = process.memoryUsage();
        held = memory.external + memory.arrayBuffers;
        if (s === 1000) heldAt1000 = held;
        const seconds = (performance.now() - started) / 1000;
        rows.push(`| ${s} | ${window.params} | ${window.state} | ${buffers.live()} | ${mib(memory.rss)} | ${mib(memory.heapUsed)} | ${mib(memory.external + memory.arrayBuffers)} | ${seconds.toFixed(1)} |`);
        worstEver = Math.max(worstEver, window.params, window.state);
        expect(buffers.live(), `live buffers at step ${s}`).toBe(baseline);
        expect(baseline).toBeGreaterThan(0);
        window = { params: 0, state: 0 };
      }
    }
    const finite = cpuSpecs.every((c) => c.param.every(Number.isFinite));
    console.info([
      `soak: ${STEPS} steps, tensors ${SIZES.join(', ')} in two groups, ${device.label || 'device'}; multiplyAdd ${MULTIPLY_ADD}; reference finite: ${finite}`,
      `buffers created in all: ${buffers.created()}, live after the first step: ${baseline}`,
      `memory after a full GC (${'gc' in globalThis ? 'run with --expose-gc' : 'no --expose-gc: includes garbage'}), MiB`,
      '| steps | max ULP, params | max ULP, state | live GPU buffers | RSS | JS heap | external + ArrayBuffers | seconds |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...rows,
    ].join('\n'));
    expect(finite).toBe(true);
    // Native and ArrayBuffer memory stays flat too (each readback's copy and staging buffer freed):
    // 16 MiB of slack for Dawn's own pools, against the ~40 MiB per 1000 steps that a retained
    // readback would add.
    if ('gc' in globalThis && heldAt1000 >= 0) expect(held - heldAt1000, 'external + ArrayBuffer bytes held since step 1000').toBeLessThan(16 * 2 ** 20);
    if (gpu.tolerance.kind === 'exact') expect(worstEver).toBe(0);

    opt.destroy();
    for (const b of [...params, ...grads]) b.buffer.destroy();
    expect(buffers.live(), 'live buffers after destroy').toBe(0);
    buffers.restore();
  });
});
