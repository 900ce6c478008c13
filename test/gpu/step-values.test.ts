/**
 * The per-step values' ring (src/gpu/step-values.ts): every step runs with the values it was recorded
 * with, in any pattern of encoders and submissions; a slot is written again only once the steps
 * recorded with it have run; it grows when none is free, and past its last page throws without
 * changing anything.
 */
import { describe, expect } from 'vitest';
import { RMSProp, schedules } from '../../src/index.js';
import { stepValuesLayout } from '../../src/gpu/pipelines.js';
import { PAGE_SLOTS, StepValuesRing } from '../../src/gpu/step-values.js';
import {
  cpuTwin,
  expectMatchesTwin,
  gpuTest,
  randomGrads,
  randomParams,
  readFloats,
  rng,
  upload,
  useDevice,
} from './harness.js';

const gpu = useDevice();

const STEPS = 200;
/** A schedule whose every step's lr differs from the one before. */
const schedule = (step: number) => 0.002 + 0.001 * ((step * 37) % 11);

describe('200 scheduled steps in 200 encoders, submitted at once', () => {
  for (const order of ['in order', 'in reverse order'] as const) {
    gpuTest(
      `${order}: each step runs with its own lr, as the CPU reference stepped in that order`,
      gpu,
      async (device) => {
        const random = rng(order === 'in order' ? 71 : 73);
        const n = 1031;
        const start = randomParams(n, random), grad = randomGrads(n, random);
        const param = upload(device, start), gradBuffer = upload(device, grad);
        const options = { momentum: 0.9, centered: true, lr: schedule };
        const optimizer = new RMSProp(device, [{ param: param.buffer, grad: gradBuffer.buffer, name: 'w' }], options);
        const commandBuffers: GPUCommandBuffer[] = [];
        for (let k = 0; k < STEPS; k++) {
          const encoder = device.createCommandEncoder({ label: `test.encoder[${k}]` });
          optimizer.step(encoder);
          commandBuffers.push(encoder.finish());
        }
        device.queue.submit(order === 'in order' ? commandBuffers : commandBuffers.reverse());

        // The reference: the same steps in the order the GPU ran them, each with the lr it was recorded with.
        const twin = cpuTwin([{ name: 'w', param: start.slice(), grad }], { ...options, lr: 0 });
        for (let i = 0; i < STEPS; i++) {
          twin.lr = schedule(order === 'in order' ? i : STEPS - 1 - i);
          twin.step();
        }
        await expectMatchesTwin(optimizer, twin, `${STEPS} steps ${order}`);
        optimizer.destroy();
        param.buffer.destroy();
        gradBuffer.buffer.destroy();
      },
    );
  }

  gpuTest(
    'with biasCorrection and a cosine schedule: each step keeps its lr and its 1 - alpha^t',
    gpu,
    async (device) => {
      const random = rng(79);
      const n = 65;
      const start = randomParams(n, random), grad = randomGrads(n, random);
      const param = upload(device, start), gradBuffer = upload(device, grad);
      const options = { lr: schedules.cosineWithWarmup(0.01, 10, STEPS), alpha: 0.9, biasCorrection: true };
      const optimizer = new RMSProp(device, [{ name: 'w', param: param.buffer, grad: gradBuffer.buffer }], options);
      const commandBuffers: GPUCommandBuffer[] = [];
      for (let k = 0; k < STEPS; k++) {
        const encoder = device.createCommandEncoder({ label: `test.encoder[${k}]` });
        optimizer.step(encoder);
        commandBuffers.push(encoder.finish());
      }
      device.queue.submit(commandBuffers);
      const twin = cpuTwin([{ name: 'w', param: start.slice(), grad }], options);
      for (let k = 0; k < STEPS; k++) twin.step();
      await expectMatchesTwin(optimizer, twin, `${STEPS} steps with biasCorrection`);
      optimizer.destroy();
      param.buffer.destroy();
      gradBuffer.buffer.destroy();
    },
  );
});

/**
 * A probe of the ring alone: each dispatch reads its step's group-0 cell (lr = k + 1 and
 * decayFactor = a mark of k, for step k) as shaders/rmsprop.wgsl binds it, and writes the mark at
 * `seen[k]`; the ring's own `countStep` dispatch counts the step. A step that read another step's
 * slot leaves its mark missing.
 */
const PROBE = /* wgsl */ `
struct StepGroup { lr: f32, decayFactor: f32, biasCorrection: f32, slot: u32 }
@group(0) @binding(0) var<storage, read_write> seen: array<f32>;
@group(1) @binding(0) var<uniform> now: StepGroup;
@compute @workgroup_size(1)
fn main() {
  seen[u32(now.lr) - 1u] = now.decayFactor;
}`;

const mark = (k: number) => 1000 + k;

function probe(device: GPUDevice, steps: number) {
  const seenLayout = device.createBindGroupLayout({
    label: 'test.probe.layout',
    entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } }],
  });
  const pipeline = device.createComputePipeline({
    label: 'test.probe',
    layout: device.createPipelineLayout({ bindGroupLayouts: [seenLayout, stepValuesLayout(device)] }),
    compute: { module: device.createShaderModule({ code: PROBE }), entryPoint: 'main' },
  });
  const seen = device.createBuffer({
    label: 'test.seen',
    size: steps * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const group = device.createBindGroup({ layout: seenLayout, entries: [{ binding: 0, resource: { buffer: seen } }] });
  return {
    seen,
    /** Records step k of `ring` into `encoder`: its values prepared, bound, and the probe dispatched. */
    record(ring: StepValuesRing, k: number, encoder?: GPUCommandEncoder): void {
      ring.next.set([k + 1, mark(k), 1, 0]);
      ring.prepare(encoder === undefined);
      const commands = encoder ?? device.createCommandEncoder();
      const pass = commands.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      ring.beginPass();
      ring.bind(pass, 0);
      pass.dispatchWorkgroups(1);
      ring.encodeCount(pass);
      pass.end();
      if (!encoder) device.queue.submit([commands.finish()]);
    },
    async expectMarks(count: number): Promise<void> {
      const values = await readFloats(device, seen, 0, count * 4);
      const wrong = [...values].map((v, k) => [k, v] as const).filter(([k, v]) => v !== mark(k));
      expect(wrong.slice(0, 5), `steps that did not see their own values (of ${count})`).toEqual([]);
    },
  };
}

describe('the ring', () => {
  gpuTest('slots are reused only once their steps have run; it grows when none is free', gpu, async (device) => {
    const p = probe(device, 3 * PAGE_SLOTS);
    const ring = new StepValuesRing(device, 1, 'test.ring', 2);
    expect(ring.capacity).toBe(PAGE_SLOTS);
    expect(ring.freeSlots).toBe(PAGE_SLOTS - 1); // slot 0 is for the optimizer's own submissions
    // More steps with new values than a page holds, each in its own encoder, none submitted yet.
    const held: GPUCommandBuffer[] = [];
    for (let k = 0; k < PAGE_SLOTS + 10; k++) {
      const encoder = device.createCommandEncoder();
      p.record(ring, k, encoder);
      held.push(encoder.finish());
    }
    expect(ring.capacity).toBe(2 * PAGE_SLOTS); // grew: no slot of an unsubmitted step was free
    device.queue.submit(held.reverse());
    await device.queue.onSubmittedWorkDone();
    await ring.settle();
    expect(ring.freeSlots).toBe(2 * PAGE_SLOTS - 2); // all but the own slot and the current one
    await p.expectMarks(PAGE_SLOTS + 10);
    ring.destroy();
    p.seen.destroy();
  });

  gpuTest(
    'a full ring throws a RangeError that says what to do, changes nothing, and works again after settle()',
    gpu,
    async (device) => {
      const p = probe(device, 2 * PAGE_SLOTS + 1);
      const ring = new StepValuesRing(device, 1, 'test.ring', 2);
      const held: GPUCommandBuffer[] = [];
      const encoder = device.createCommandEncoder();
      let k = 0;
      for (; k < 2 * PAGE_SLOTS - 1; k++) p.record(ring, k, encoder); // every caller slot of both pages
      held.push(encoder.finish());
      expect(ring.freeSlots).toBe(0);
      ring.next.set([k + 1, mark(k), 1, 0]);
      expect(() => ring.prepare(false)).toThrow(
        /recorded into command buffers not yet known to have run.*settle\(\).*Nothing was changed/s,
      );
      expect(ring.capacity).toBe(2 * PAGE_SLOTS);
      // The optimizer's own submissions still work: they have a slot of their own.
      p.record(ring, k++);
      device.queue.submit(held);
      await ring.settle();
      expect(ring.freeSlots).toBe(2 * PAGE_SLOTS - 2);
      const again = device.createCommandEncoder();
      p.record(ring, k++, again);
      device.queue.submit([again.finish()]);
      await p.expectMarks(k);
      ring.destroy();
      p.seen.destroy();
    },
  );

  gpuTest(
    'a readback before the encoders are submitted frees nothing: later steps take other slots',
    gpu,
    async (device) => {
      const count = PAGE_SLOTS + 20;
      const p = probe(device, count);
      const ring = new StepValuesRing(device, 1, 'test.ring');
      const held: GPUCommandBuffer[] = [];
      const record = (k: number) => {
        const encoder = device.createCommandEncoder();
        p.record(ring, k, encoder);
        held.push(encoder.finish());
      };
      for (let k = 0; k < 40; k++) record(k);
      await ring.settle(); // their command buffers are not submitted: their slots stay taken
      expect(ring.freeSlots).toBe(PAGE_SLOTS - 1 - 40);
      for (let k = 40; k < count; k++) record(k); // would overwrite the first steps' values if they were freed
      device.queue.submit(held);
      await p.expectMarks(count);
      ring.destroy();
      p.seen.destroy();
    },
  );

  gpuTest(
    'a step recorded into an encoder that is never submitted keeps its slot; the others come back',
    gpu,
    async (device) => {
      const p = probe(device, 8);
      const ring = new StepValuesRing(device, 1, 'test.ring');
      const dropped = device.createCommandEncoder();
      p.record(ring, 0, dropped); // never submitted
      for (let k = 1; k < 8; k++) {
        const encoder = device.createCommandEncoder();
        p.record(ring, k, encoder);
        device.queue.submit([encoder.finish()]);
      }
      await ring.settle();
      // Free: all caller slots but the current one (step 7's) and the dropped step's.
      expect(ring.freeSlots).toBe(PAGE_SLOTS - 1 - 2);
      dropped.finish();
      ring.destroy();
      p.seen.destroy();
    },
  );

  gpuTest('steps with unchanged values share one slot and write nothing', gpu, async (device) => {
    const p = probe(device, 1);
    const ring = new StepValuesRing(device, 1, 'test.ring');
    const writes: number[] = [];
    const original = device.queue.writeBuffer.bind(device.queue);
    device.queue.writeBuffer = ((...args: Parameters<GPUQueue['writeBuffer']>) => {
      writes.push(args[1]);
      original(...args);
    }) as GPUQueue['writeBuffer'];
    try {
      const encoder = device.createCommandEncoder();
      for (let i = 0; i < 10; i++) p.record(ring, 0, encoder);
      device.queue.submit([encoder.finish()]);
      for (let i = 0; i < 10; i++) p.record(ring, 0); // own submissions: one write to their own slot
    } finally {
      device.queue.writeBuffer = original;
    }
    expect(writes.length).toBe(2);
    expect(ring.freeSlots).toBe(PAGE_SLOTS - 2);
    await p.expectMarks(1);
    ring.destroy();
    p.seen.destroy();
  });
});
