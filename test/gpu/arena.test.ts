/**
 * ParamArena: a model's tensors in one parameter buffer and one gradient buffer, updated in one
 * dispatch per step, as the CPU twin at the adapter's tolerance (bit for bit where measured), with
 * the padding between tensors left at zero bits on every adapter (0 / den is 0: eps >= 2^-126).
 */
import { describe, expect } from 'vitest';
import { ARENA_ALIGNMENT, ParamArena, RMSProp, type RMSPropOptions } from '../../src/index.js';
import { bits, cpuTwin, expectMatchesTwin, gpuTest, randomGrads, randomParams, readFloats, rng, useDevice, write } from './harness.js';

const gpu = useDevice();

/** Odd sizes, so that most tensors end inside a 256-byte block and leave padding after them. */
const SIZES = [5, 70, 3, 64, 1, 1031];
const OPTIONS: Partial<RMSPropOptions>[] = [
  {},
  { momentum: 0.9, centered: true, weightDecay: 0.1 },
  { maximize: true, epsMode: 'inside', momentum: 0.5, lrInMomentum: true, initialScale: 1 },
];

/** Wraps `encoder.beginComputePass` to count the dispatches recorded in its passes. */
function countDispatches(encoder: GPUCommandEncoder): { passes: number; dispatches: number } {
  const counts = { passes: 0, dispatches: 0 };
  const begin = encoder.beginComputePass.bind(encoder);
  encoder.beginComputePass = (descriptor?: GPUComputePassDescriptor) => {
    counts.passes++;
    const pass = begin(descriptor);
    const dispatch = pass.dispatchWorkgroups.bind(pass);
    pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => {
      counts.dispatches++;
      dispatch(x, y, z);
    };
    return pass;
  };
  return counts;
}

describe('ParamArena', () => {
  for (const options of OPTIONS) {
    gpuTest(`${JSON.stringify(options)}: one update dispatch per step, the CPU twin's values, padding stays zero`, gpu, async (device) => {
      const random = rng(7);
      const arena = new ParamArena(device, SIZES.map((size, i) => ({ name: `t${i}`, size })), 'test.arena');
      try {
        const cpu = SIZES.map((n) => ({ param: randomParams(n, random), grad: new Float32Array(n) }));
        arena.tensors.forEach((t, i) => write(device, arena.params, t.offset, cpu[i]!.param));
        const optimizer = new RMSProp(device, arena.specs(), options);
        const twin = cpuTwin(cpu, options);
        for (let s = 0; s < 4; s++) {
          arena.tensors.forEach((t, i) => {
            cpu[i]!.grad.set(randomGrads(t.size, random));
            write(device, arena.grads, t.offset, cpu[i]!.grad);
          });
          const encoder = device.createCommandEncoder({ label: 'test.arena.step' });
          const counts = countDispatches(encoder);
          optimizer.step(encoder);
          device.queue.submit([encoder.finish()]);
          expect(counts, 'one compute pass with one update dispatch for all six tensors, then countStep')
            .toEqual({ passes: 1, dispatches: 2 });
          twin.step();
        }
        await expectMatchesTwin(optimizer, twin, 'arena after 4 steps');

        // The padding between tensors (and after the last) is still all zero bits.
        const all = bits(await readFloats(device, arena.params));
        const live = new Uint8Array(all.length);
        arena.tensors.forEach((t) => live.fill(1, t.offset / 4, t.offset / 4 + t.size));
        const dirty = all.findIndex((b, k) => !live[k] && b !== 0);
        expect(dirty, `padding element ${dirty} of ${all.length}`).toBe(-1);
        expect(all.length * 4).toBe(arena.params.size);
        optimizer.destroy();
      } finally {
        arena.destroy();
      }
    });
  }

  gpuTest('lays tensors out at 256-byte offsets and hands out bindings for the app\'s kernels', gpu, (device) => {
    const arena = new ParamArena(device, SIZES.map((size, i) => ({ name: `t${i}`, size })));
    try {
      let end = 0;
      for (const [i, t] of arena.tensors.entries()) {
        expect(t.offset % ARENA_ALIGNMENT).toBe(0);
        expect(t.offset).toBeGreaterThanOrEqual(end);
        expect(t.offset - end).toBeLessThan(ARENA_ALIGNMENT);
        expect(t.param).toEqual({ buffer: arena.params, offset: t.offset, size: SIZES[i]! * 4 });
        expect(t.grad).toEqual({ buffer: arena.grads, offset: t.offset, size: SIZES[i]! * 4 });
        expect(arena.tensor(t.name)).toBe(t);
        end = t.offset + t.size * 4;
      }
      expect(arena.params.size).toBe(Math.ceil(end / ARENA_ALIGNMENT) * ARENA_ALIGNMENT);
      expect(arena.params.label).toBe('ParamArena.params');
      expect(() => arena.tensor('nope')).toThrow(/no tensor 'nope'.*t0, t1/);
    } finally {
      arena.destroy();
    }
  });

  gpuTest('refuses bad layouts with errors that name the tensor, before allocating', gpu, (device) => {
    const before = device.createBuffer;
    let made = 0;
    device.createBuffer = (d: GPUBufferDescriptor) => { made++; return before.call(device, d); };
    try {
      expect(() => new ParamArena(device, [])).toThrow(RangeError);
      expect(() => new ParamArena(device, [{ name: 'w', size: 0 }])).toThrow(/tensors\[0\] \('w'\)\.size must be a positive integer/);
      expect(() => new ParamArena(device, [{ name: 'w', size: 2.5 }])).toThrow(RangeError);
      expect(() => new ParamArena(device, [{ name: '', size: 2 }])).toThrow(/tensors\[0\]\.name must be a non-empty string/);
      expect(() => new ParamArena(device, [{ name: 'w', size: 2 }, { name: 'w', size: 3 }])).toThrow(/'w' is used twice/);
      expect(() => new ParamArena(device, [{ name: 'w', size: 2 ** 40 }])).toThrow(/maxBufferSize/);
      expect(made).toBe(0);
    } finally {
      device.createBuffer = before;
    }
  });

  gpuTest('mixing arena tensors with a separate buffer still trains them all in one pass', gpu, async (device) => {
    const random = rng(11);
    const arena = new ParamArena(device, [{ name: 'a', size: 9 }, { name: 'b', size: 300 }]);
    const lone = device.createBuffer({ label: 'test.lone.param', size: 12 * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    const loneGrad = device.createBuffer({ label: 'test.lone.grad', size: 12 * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    try {
      const cpu = [9, 300, 12].map((n) => ({ param: randomParams(n, random), grad: randomGrads(n, random) }));
      write(device, arena.params, arena.tensor('a').offset, cpu[0]!.param);
      write(device, arena.params, arena.tensor('b').offset, cpu[1]!.param);
      write(device, lone, 0, cpu[2]!.param);
      write(device, arena.grads, arena.tensor('a').offset, cpu[0]!.grad);
      write(device, arena.grads, arena.tensor('b').offset, cpu[1]!.grad);
      write(device, loneGrad, 0, cpu[2]!.grad);
      const options = { momentum: 0.9 };
      const optimizer = new RMSProp(device, [...arena.specs(), { param: lone, grad: loneGrad, name: 'lone' }], options);
      const twin = cpuTwin(cpu, options);
      const encoder = device.createCommandEncoder();
      const counts = countDispatches(encoder);
      optimizer.step(encoder);
      device.queue.submit([encoder.finish()]);
      twin.step();
      expect(counts.passes).toBe(1);
      await expectMatchesTwin(optimizer, twin, 'arena and a separate buffer, one step');
      optimizer.destroy();
    } finally {
      arena.destroy();
      lone.destroy();
      loneGrad.destroy();
    }
  });
});
