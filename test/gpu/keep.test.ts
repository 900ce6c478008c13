/**
 * `step(encoder, { keep })`: the kept tensors' parameters and every state value come out of the step
 * bit for bit as they went in, on every adapter (copies, not arithmetic); the others match the CPU
 * twin's `step({ keep })` at the adapter's tolerance, in an arena and in separate buffers, with the
 * pre-pass, with several steps in one encoder. Bad `keep` throws before any GPU work.
 */
import { describe, expect } from 'vitest';
import { ParamArena, RMSProp, type RMSPropConfig, type RMSPropState } from '../../src/index.js';
import {
  attemptWatchingGpuWork, bits, cpuTwin, expectMatchesTwin, gpuTest, NO_GPU_WORK, randomGrads, randomParams,
  readFloats, rng, upload, useDevice, withErrorScopes, write,
} from './harness.js';
import { Twin } from './twin.js';

const gpu = useDevice();

/** Odd sizes: tensors that end inside a 256-byte block, padding after them. */
const SIZES = [5, 70, 3, 64, 1, 1031];
/** Every state slot, decoupled decay (a factor on p), and clipping (gradients about 3x past the norm). */
const OPTIONS: RMSPropConfig = { momentum: 0.9, centered: true, weightDecay: 0.01, weightDecayMode: 'decoupled', clipGradNorm: 2 };
/** Per encoder, its steps, each the tensors it keeps (several steps in one encoder, and all kept, included). */
const ENCODERS: number[][][] = [[[]], [[1]], [[0, 5]], [[2, 3, 4], [5], [1, 2]], [[0, 1, 2, 3, 4, 5]], [[3]]];

/** Every value of tensor `i` in a state dict, as bits: parameters (from readParams) and each state slot. */
function tensorBits(params: Float32Array[], state: RMSPropState, i: number): Uint32Array[] {
  const t = state.tensors[i]!;
  return [params[i]!, t.squareAvg, t.gradAvg, t.momentumBuffer].filter((x): x is Float32Array => x !== undefined).map(bits);
}

describe('step(encoder, { keep })', () => {
  gpuTest('a ParamArena with the pre-pass: kept tensors bit for bit as before, the rest as the CPU twin', gpu, async (device) => {
    const random = rng(41);
    const arena = new ParamArena(device, SIZES.map((size, i) => ({ name: `t${i}`, size })), 'test.keep.arena');
    const cpu = SIZES.map((n) => ({ param: randomParams(n, random), grad: new Float32Array(n) }));
    arena.tensors.forEach((t, i) => write(device, arena.params, t.offset, cpu[i]!.param));
    const optimizer = new RMSProp(device, arena.specs(), OPTIONS);
    const twin = cpuTwin(cpu, OPTIONS);
    const staged: GPUBuffer[] = [];
    try {
      await withErrorScopes(device, async () => {
        let steps = 0;
        for (const [e, keeps] of ENCODERS.entries()) {
          const before = [await optimizer.readParams(), await optimizer.stateDict()] as const;
          const encoder = device.createCommandEncoder({ label: 'test.keep.step' });
          for (const keep of keeps) {
            // Each step's gradients reach the arena by a copy in the encoder, in order (a queue write
            // would land before every step of the encoder).
            const grads = device.createBuffer({ label: 'test.keep.grads', size: arena.grads.size, usage: 0x04 | 0x08 });
            staged.push(grads);
            arena.tensors.forEach((t, i) => {
              // A kept tensor has no gradient this step: zero, as a caller leaves it out of the norm.
              cpu[i]!.grad.set(keep.includes(i) ? new Float32Array(t.size) : randomGrads(t.size, random).map((g) => 3 * g));
              write(device, grads, t.offset, cpu[i]!.grad);
            });
            encoder.copyBufferToBuffer(grads, 0, arena.grads, 0, arena.grads.size);
            optimizer.step(encoder, { keep });
            twin.step({ keep });
            expect(optimizer.stepCount, 'every step counts').toBe(++steps);
          }
          device.queue.submit([encoder.finish()]);
          await expectMatchesTwin(optimizer, twin, `encoder ${e + 1} (keep ${JSON.stringify(keeps)})`);
          const after = [await optimizer.readParams(), await optimizer.stateDict()] as const;
          for (const i of SIZES.keys()) {
            const keptThroughout = keeps.every((k) => k.includes(i)), neverKept = keeps.every((k) => !k.includes(i));
            if (keptThroughout) {
              expect(tensorBits(after[0], after[1], i), `encoder ${e + 1}: tensor ${i}, kept, bit for bit`)
                .toEqual(tensorBits(before[0], before[1], i));
            } else if (neverKept) {
              expect(tensorBits(after[0], after[1], i), `encoder ${e + 1}: tensor ${i} was stepped`)
                .not.toEqual(tensorBits(before[0], before[1], i));
            }
          }
        }
        // The padding between tensors is still zero: kept or not, nothing wrote it.
        const all = await readFloats(device, arena.params);
        arena.tensors.forEach((t, i) => {
          const end = t.offset / 4 + t.size, next = arena.tensors[i + 1]?.offset ?? arena.params.size;
          expect(Array.from(bits(all.subarray(end, next / 4))).every((b) => b === 0), `padding after t${i}`).toBe(true);
        });
      });
    } finally {
      optimizer.destroy();
      arena.destroy();
      staged.forEach((b) => b.destroy());
    }
  });

  gpuTest('separate buffers, each tensor kept in turn, own submissions: state as the twin after every step', gpu, async (device) => {
    const options: RMSPropConfig = { momentum: 0.5, alpha: 0.9 };
    const twin = Twin.ofSizes(device, [17, 4, 300], options, 5);
    try {
      await withErrorScopes(device, async () => {
        for (let s = 0; s < 6; s++) {
          const keep = [s % 3];
          twin.setGrads(twin.tensors.map((t, i) => (keep.includes(i) ? new Float32Array(t.size) : randomGrads(t.size, twin.random))));
          twin.step(undefined, { keep });
          await twin.expectState(`step ${s + 1}, keep ${keep.join()}`);
        }
      });
    } finally {
      twin.destroy();
    }
  });

  gpuTest('bad keep: the error names the entry and the fix, and no GPU work is done', gpu, async (device) => {
    const twin = Twin.ofSizes(device, [8, 9], {}, 3);
    const noCopy = upload(device, new Float32Array(4), { usage: 0x80, label: 'test.keep.noCopyUsage' });
    const noCopyGrad = upload(device, new Float32Array(4), { label: 'test.keep.noCopyUsage.grad' });
    const plain = new RMSProp(device, [{ param: noCopy.binding, grad: noCopyGrad.binding, name: 'storageOnly' }]);
    const halves = upload(device, new Float32Array(2), { label: 'test.keep.f16' }); // 4 halves
    const halfGrad = upload(device, new Float32Array(4), { label: 'test.keep.f16.grad' });
    const half = new RMSProp(device, [{ param: halves.binding, grad: halfGrad.binding, name: 'h' }], { paramDtype: 'f16' });
    try {
      twin.setGrads();
      const before = [await twin.gpu.readParams(), await twin.gpu.stateDict()] as const;
      const cases: [RMSProp, unknown, ErrorConstructor, RegExp][] = [
        [twin.gpu, { keep: [2] }, RangeError, /keep\[0\] is 2; it must be a tensor index, an integer from 0 to 1/],
        [twin.gpu, { keep: [-1] }, RangeError, /keep\[0\] is -1/],
        [twin.gpu, { keep: [0.5] }, RangeError, /keep\[0\] is 0\.5/],
        [twin.gpu, { keep: ['0'] }, RangeError, /keep\[0\] is 0; it must be a tensor index/],
        [twin.gpu, { keep: [1, 1] }, RangeError, /keep lists tensor 1 \('t1\.size9'\) twice; list it once/],
        [twin.gpu, { keep: 1 }, TypeError, /keep must be an array of tensor indices \(0 to 1\)/],
        [twin.gpu, { kept: [1] }, TypeError, /unknown step option 'kept'; the one step option is keep/],
        [twin.gpu, 'keep', TypeError, /the step options must be an object such as \{ keep: \[0\] \}/],
        [plain, { keep: [0] }, RangeError, /'storageOnly', whose parameter buffer lacks COPY_SRC or COPY_DST usage/],
        [half, { keep: [0] }, RangeError, /'h', whose parameters are f16; keep needs f32 parameters/],
      ];
      for (const [optimizer, options, type, message] of cases) {
        const steps = optimizer.stepCount;
        const { error, calls } = attemptWatchingGpuWork(device, () => optimizer.step(undefined, options as never));
        expect(error, `${JSON.stringify(options)}`).toBeInstanceOf(type);
        expect((error as Error).message).toMatch(message);
        expect(calls, `${JSON.stringify(options)}: no GPU work`).toEqual(NO_GPU_WORK);
        expect(optimizer.stepCount, 'the step count is unchanged').toBe(steps);
      }
      const after = [await twin.gpu.readParams(), await twin.gpu.stateDict()] as const;
      for (const i of [0, 1]) expect(tensorBits(after[0], after[1], i)).toEqual(tensorBits(before[0], before[1], i));
      // The CPU twin refuses the same way.
      expect(() => twin.cpu.step({ keep: [1, 1] })).toThrow(/keep lists tensor 1 \('t1\.size9'\) twice/);
    } finally {
      twin.destroy();
      plain.destroy();
      half.destroy();
      [noCopy, noCopyGrad, halves, halfGrad].forEach((p) => p.buffer.destroy());
    }
  });
});
