/**
 * What one step records: one compute pass; for a ParamArena one update dispatch, and with
 * clipGradNorm + skipNonFinite two more (the pre-pass's run and `finish`); for separate buffers one
 * update dispatch per body and per tail, the pre-pass one run per tensor; each pipeline set once.
 */
import { describe, expect } from 'vitest';
import { ParamArena, RMSProp, type RMSPropConfig } from '../../src/index.js';
import { gpuTest, randomGrads, randomParams, rng, upload, useDevice, write } from './harness.js';

const gpu = useDevice();

interface Recorded {
  passes: number;
  dispatches: number;
  setPipeline: number;
  /** The labels of the pipelines in the order they were set. */
  pipelines: string[];
}

/** Wraps `encoder.beginComputePass` to count what its passes record. */
function recording(encoder: GPUCommandEncoder): Recorded {
  const counts: Recorded = { passes: 0, dispatches: 0, setPipeline: 0, pipelines: [] };
  const begin = encoder.beginComputePass.bind(encoder);
  encoder.beginComputePass = (descriptor?: GPUComputePassDescriptor) => {
    counts.passes++;
    const pass = begin(descriptor);
    const dispatch = pass.dispatchWorkgroups.bind(pass), set = pass.setPipeline.bind(pass);
    pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => { counts.dispatches++; dispatch(x, y, z); };
    pass.setPipeline = (p: GPUComputePipeline) => { counts.setPipeline++; counts.pipelines.push(p.label); set(p); };
    return pass;
  };
  return counts;
}

function stepOnce(device: GPUDevice, optimizer: RMSProp): Recorded {
  const encoder = device.createCommandEncoder({ label: 'test.count' });
  const counts = recording(encoder);
  optimizer.step(encoder);
  device.queue.submit([encoder.finish()]);
  return counts;
}

const SIZES = [1031, 3, 64, 5, 70_000, 1];

describe('a ParamArena', () => {
  const cases: [string, RMSPropConfig, number][] = [
    // The update, then countStep (the step counted for the ring of per-step values); the pre-pass adds two.
    ['plain', {}, 2],
    ['centered + momentum', { centered: true, momentum: 0.9 }, 2],
    ['clipGradNorm + skipNonFinite', { clipGradNorm: 1, skipNonFinite: true, momentum: 0.9 }, 4],
    ['skipNonFinite', { skipNonFinite: true }, 4],
  ];
  for (const [name, options, expected] of cases) {
    gpuTest(
      `${name}: ${expected} dispatch${expected > 1 ? 'es' : ''} in one pass for ${SIZES.length} tensors`,
      gpu,
      async (device) => {
        const arena = new ParamArena(device, SIZES.map((size, i) => ({ name: `t${i}`, size })), 'test.arena');
        const random = rng(3);
        arena.tensors.forEach((t) => {
          write(device, arena.params, t.offset, randomParams(t.size, random));
          write(device, arena.grads, t.offset, randomGrads(t.size, random));
        });
        const optimizer = new RMSProp(device, arena.specs(), options);
        expect(optimizer.dispatchesPerStep).toEqual({ dispatches: expected, passes: 1 });
        for (let s = 0; s < 3; s++) {
          const counts = stepOnce(device, optimizer);
          expect(counts.passes).toBe(1);
          expect(counts.dispatches).toBe(expected);
          expect(counts.setPipeline, 'each pipeline set once').toBe(expected);
        }
        optimizer.destroy();
        arena.destroy();
      },
    );
  }
});

describe('separate buffers', () => {
  const bodies = SIZES.filter((n) => n >= 4).length, tails = SIZES.filter((n) => n % 4 !== 0).length;

  gpuTest(
    `${SIZES.length} tensors: ${bodies} bodies then ${tails} tails, two pipelines set once each, then countStep`,
    gpu,
    async (device) => {
      const random = rng(5);
      const specs = SIZES.map((n) => ({
        param: upload(device, randomParams(n, random)).buffer,
        grad: upload(device, randomGrads(n, random)).buffer,
      }));
      const optimizer = new RMSProp(device, specs, { momentum: 0.9 });
      const counts = stepOnce(device, optimizer);
      expect(counts).toEqual({
        passes: 1,
        dispatches: bodies + tails + 1,
        setPipeline: 3,
        pipelines: [
          'RMSProp.pipeline[momentum].stepBody', 'RMSProp.pipeline[momentum].stepTail', 'RMSProp.pipeline.countStep',
        ],
      });
      expect(optimizer.dispatchesPerStep.dispatches).toBe(bodies + tails + 1);
      optimizer.destroy();
      specs.forEach((s) => { s.param.destroy(); s.grad.destroy(); });
    },
  );

  gpuTest(
    'with the pre-pass: one run per tensor and finish, then the update; two groups of two variants',
    gpu,
    async (device) => {
      const random = rng(7);
      const specs = SIZES.map((n) => ({
        param: upload(device, randomParams(n, random)).buffer,
        grad: upload(device, randomGrads(n, random)).buffer,
      }));
      const optimizer = new RMSProp(device, [
        { params: specs.slice(0, 3) },
        { params: specs.slice(3), centered: true },
      ], { clipGradNorm: 1 });
      const counts = stepOnce(device, optimizer);
      expect(counts.passes).toBe(1);
      expect(counts.dispatches).toBe(SIZES.length + 1 + bodies + tails + 1);
      expect(counts.pipelines).toEqual([
        'RMSProp.gradNorm.pipeline[f32].partialNorms', 'RMSProp.gradNorm.pipeline[f32].finish',
        'RMSProp.pipeline[clip].stepBody', 'RMSProp.pipeline[centered+clip].stepBody',
        'RMSProp.pipeline[clip].stepTail', 'RMSProp.pipeline[centered+clip].stepTail', 'RMSProp.pipeline.countStep',
      ]);
      optimizer.destroy();
      specs.forEach((s) => { s.param.destroy(); s.grad.destroy(); });
    },
  );
});
