/**
 * `stateDict()` and `readParams()` are one step's state: each copies everything it reads by one
 * submission made when it is called, however many staging buffers that takes, so steps submitted
 * while it is read are not in it. And the state dict's `step` counts the steps in that state, while
 * `stepCount` counts `step()` calls: the two differ exactly by the steps still waiting in encoders.
 * Every result is compared with the CPU twin at the step it must hold.
 */
import { afterEach, describe, expect } from 'vitest';
import { RMSProp, type RMSPropState } from '../../src/index.js';
import { readbackLimits } from '../../src/state/readback.js';
import { bits, expectBitExact, expectMatchesTwin, gpuTest, upload, useDevice } from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

/** Every state slot, and the skipped-step count in the snapshot too. */
const OPTIONS = { centered: true, momentum: 0.9, lr: 0.02, skipNonFinite: true };
/** About 16 KiB of state per tensor for the largest: 1 KiB staging buffers make the reads span many. */
const SIZES = [1031, 3, 517];
const SMALL_STAGING = 1024;
const defaultStaging = readbackLimits.stagingBytes;

afterEach(() => { readbackLimits.stagingBytes = defaultStaging; });

/** A state and parameters already read, in the shape `expectMatchesTwin` reads them from. */
function asRead(params: Float32Array[], state: RMSPropState) {
  return { readParams: async () => params, stateDict: async () => state };
}

/** Counts the staging buffers `label` made, and their largest size, by spying on createBuffer. */
function watchStaging(device: GPUDevice, label: string): { count: number; largest: number; restore: () => void } {
  const original = device.createBuffer;
  const seen = { count: 0, largest: 0, restore: () => { device.createBuffer = original; } };
  device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    if (descriptor.label?.startsWith(label)) {
      seen.count++;
      seen.largest = Math.max(seen.largest, descriptor.size);
    }
    return original.call(this, descriptor);
  };
  return seen;
}

describe('stateDict() and readParams(): one step\'s state', () => {
  gpuTest('stepping while they are read: both hold step k, over many staging buffers; then the steps land', gpu, async (device) => {
    readbackLimits.stagingBytes = SMALL_STAGING;
    const twin = Twin.ofSizes(device, SIZES, OPTIONS, 81);
    try {
      await twin.run(3);
      const staging = watchStaging(device, 'RMSProp.stateDict.staging');
      let reads: Promise<[RMSPropState, Float32Array[]]>;
      try {
        reads = Promise.all([twin.gpu.stateDict(), twin.gpu.readParams()]);
      } finally {
        staging.restore();
      }
      // The state spans many staging buffers, none larger than the limit.
      expect(staging.count).toBeGreaterThan(10);
      expect(staging.largest).toBeLessThanOrEqual(SMALL_STAGING);
      // Two more steps, submitted before anything of the reads has been mapped (their gradients kept for the twin).
      const later: Float32Array[][] = [];
      for (let s = 0; s < 2; s++) {
        twin.setGrads();
        twin.gpu.step();
        later.push(twin.tensors.map((t) => t.cpuGrad.slice()));
      }
      const [state, params] = await reads;
      expect(state.step).toBe(3);
      expect(twin.gpu.stepCount).toBe(5);
      await expectMatchesTwin(asRead(params, state), twin.cpu, 'read while stepping: step 3');
      // The two steps did run, after the copies: the state is now the twin's after the same two.
      for (const grads of later) {
        twin.tensors.forEach((t, i) => t.cpuGrad.set(grads[i]!));
        twin.cpuStep();
      }
      await twin.expectState('after the steps submitted during the reads: step 5');
    } finally {
      twin.destroy();
    }
  });

  gpuTest('a step in an unsubmitted encoder is in neither the state nor its step; a new optimizer resumes', gpu, async (device) => {
    const twin = Twin.ofSizes(device, SIZES, OPTIONS, 83);
    try {
      await twin.run(2);
      twin.setGrads(); // written through the queue now: in place when the encoder runs
      const encoder = device.createCommandEncoder({ label: 'test.snapshot.pending' });
      twin.gpu.step(encoder);
      expect(twin.gpu.stepCount, 'stepCount counts the step() call').toBe(3);
      const [state, params] = await Promise.all([twin.gpu.stateDict(), twin.gpu.readParams()]);
      expect(state.step, 'the state dict counts the steps in its state').toBe(2);
      await expectMatchesTwin(asRead(params, state), twin.cpu, 'with a step pending: step 2');

      // What a PyTorch user does with it: a new optimizer on those parameters loads it and takes the
      // pending step's place, on the same gradients: bit for bit what the original does once submitted.
      const copies = params.map((p, i) => ({
        name: twin.tensors[i]!.name, param: upload(device, p).buffer, grad: twin.tensors[i]!.grad.buffer,
      }));
      const resumed = new RMSProp(device, copies, OPTIONS);
      try {
        resumed.loadStateDict(state);
        resumed.step();
        device.queue.submit([encoder.finish()]);
        twin.cpuStep();
        const [after, resumedAfter] = await Promise.all([twin.gpu.stateDict(), resumed.stateDict()]);
        expect([after.step, resumedAfter.step, twin.gpu.stepCount, resumed.stepCount]).toEqual([3, 3, 3, 3]);
        await twin.expectState('the pending step submitted: step 3');
        const [a, b] = await Promise.all([twin.gpu.readParams(), resumed.readParams()]);
        a.forEach((p, i) => expectBitExact(b[i]!, p, `resumed param ${i}`));
        for (const slot of ['squareAvg', 'gradAvg', 'momentumBuffer'] as const) {
          after.tensors.forEach((t, i) => {
            expectBitExact(bits(resumedAfter.tensors[i]![slot]!), bits(t[slot]!), `resumed ${slot} ${i}`);
          });
        }
      } finally {
        resumed.destroy();
        copies.forEach((c) => c.param.destroy());
      }
    } finally {
      twin.destroy();
    }
  });

  gpuTest('70 steps with new lrs in 70 encoders (two ring pages), 65 submitted: the state dict holds step 65', gpu, async (device) => {
    const twin = Twin.ofSizes(device, SIZES, OPTIONS, 85);
    try {
      twin.setGrads(); // one gradient for every step
      const lrOf = (s: number) => 0.01 + s * 1e-4;
      const commands: GPUCommandBuffer[] = [];
      for (let s = 0; s < 70; s++) {
        twin.gpu.lr = lrOf(s);
        const encoder = device.createCommandEncoder({ label: 'test.snapshot.encoder' });
        twin.gpu.step(encoder);
        commands.push(encoder.finish());
      }
      device.queue.submit(commands.slice(0, 65));
      const [state, params] = await Promise.all([twin.gpu.stateDict(), twin.gpu.readParams()]);
      for (let s = 0; s < 65; s++) {
        twin.cpu.lr = lrOf(s);
        twin.cpuStep();
      }
      expect([state.step, twin.gpu.stepCount]).toEqual([65, 70]);
      await expectMatchesTwin(asRead(params, state), twin.cpu, '65 of 70 submitted');
      device.queue.submit(commands.slice(65));
      for (let s = 65; s < 70; s++) {
        twin.cpu.lr = lrOf(s);
        twin.cpuStep();
      }
      const all = await twin.expectState('all 70 submitted');
      expect(all.step).toBe(70);
    } finally {
      twin.destroy();
    }
  });
});
