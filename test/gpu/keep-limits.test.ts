/**
 * `step(encoder, { keep })` never makes a buffer past `maxBufferSize` (which would be invalid, and make
 * the caller's whole command buffer invalid with it): its scratch space is several buffers, each within
 * the limit, the kept bytes split across them.
 *
 * - The scratch space alone (src/gpu/keep-copies.ts), with a limit of 512 bytes: kept spans split over
 *   many buffers come back bit for bit, the others stay as the pass left them; growth adds buffers and
 *   an encoder recorded before it still runs.
 * - The optimizer on a device with WebGPU's default limits (no requiredLimits), sized from its
 *   `maxBufferSize` M: a kept tensor of just over M/2 bytes (parameter and state), then that tensor and
 *   another. Growth by doubling would make a buffer of more than M there.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { describeLimits, requestNodeDevice } from '../../demo/node/dawn.js';
import { RMSProp, type RMSPropState } from '../../src/index.js';
import { KeepCopies } from '../../src/gpu/keep-copies.js';
import type { ResolvedParam } from '../../src/gpu/params.js';
import {
  bits, cpuTwin, expectBitExact, expectMatchesTwin, gpuTest, randomGrads, randomParams, readFloats, rng, upload,
  useDevice, withErrorScopes, write,
} from './harness.js';

const gpu = useDevice();

/** Watches createBuffer for buffers whose label starts with `label`: their sizes. */
function watchBuffers(device: GPUDevice, label: string): { sizes: number[]; restore: () => void } {
  const original = device.createBuffer;
  const sizes: number[] = [];
  device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    if (descriptor.label?.startsWith(label)) sizes.push(descriptor.size);
    return original.call(this, descriptor);
  };
  return { sizes, restore: () => { device.createBuffer = original; } };
}

describe('keep: the scratch space alone', () => {
  gpuTest('a 512-byte limit: spans split over many buffers, restored bit for bit; earlier encoders stay valid', gpu, async (device) => {
    const LIMIT = 512;
    const random = rng(91);
    const sizes = [5, 70, 1031];
    const params = sizes.map((n, i) => upload(device, randomParams(n, random), { label: `test.keepScratch.param[${i}]` }));
    // Each tensor's "state": two slots of its size in one shared buffer, at 256-byte aligned offsets.
    const slotBytes = sizes.map((n) => Math.ceil((n * 4) / 256) * 256);
    const stateAt = slotBytes.map((_, i) => 2 * slotBytes.slice(0, i).reduce((a, b) => a + b, 0));
    const stateValues = randomParams(stateAt.at(-1)! / 4 + (2 * slotBytes.at(-1)!) / 4, random);
    const state = upload(device, stateValues, { label: 'test.keepScratch.state' });
    const resolved: ResolvedParam[] = sizes.map((size, index) => ({
      name: `t${index}`, index, group: 0, size, param: params[index]!.binding, grad: params[index]!.binding,
    }));
    const store = {
      tensorStateSpans: (i: number) => [0, 1].map((slot) => ({
        buffer: state.buffer, offset: stateAt[i]! + slot * slotBytes[i]!, size: sizes[i]! * 4,
      })),
    };
    const keep = new KeepCopies(device, resolved, store, LIMIT);
    const buffers = [...params.map((p) => p.buffer), state.buffer];
    const readAll = () => Promise.all(buffers.map((b) => readFloats(device, b)));
    const before = await readAll();
    try {
      // Encoder A keeps tensor 0; encoder B, recorded after, keeps all three (the scratch space grows).
      // Each clears every buffer between the copies aside and back, as a step's pass would change them.
      const encoders = [[0], [0, 1, 2]].map((kept) => {
        const encoder = device.createCommandEncoder({ label: 'test.keepScratch' });
        keep.save(encoder, kept);
        for (const b of buffers) encoder.clearBuffer(b);
        keep.restore(encoder);
        return { encoder, kept };
      });
      expect(Math.max(...keep.scratchSizes), 'every scratch buffer within the limit').toBeLessThanOrEqual(LIMIT);
      const keptBytes = sizes.reduce((n, s) => n + 3 * 4 * s, 0);
      expect(keep.scratchSizes.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(keptBytes);
      expect(keep.scratchSizes.length, 'several buffers').toBeGreaterThanOrEqual(Math.ceil(keptBytes / LIMIT));
      for (const { encoder, kept } of encoders) {
        // Restore the original values first, so each encoder's kept tensors have something to keep.
        params.forEach((p, i) => write(device, p.buffer, 0, before[i]!));
        write(device, state.buffer, 0, before[3]!);
        device.queue.submit([encoder.finish()]);
        const after = await readAll();
        sizes.forEach((n, i) => {
          const expected = kept.includes(i) ? before[i]! : new Float32Array(n);
          expectBitExact(bits(after[i]!), bits(expected), `keep [${kept}]: param ${i}`);
          for (const slot of [0, 1]) {
            const from = (stateAt[i]! + slot * slotBytes[i]!) / 4;
            const expectedSlot = kept.includes(i) ? before[3]!.subarray(from, from + n) : new Float32Array(n);
            const what = `keep [${kept}]: state ${i}.${slot}`;
            expectBitExact(bits(after[3]!.subarray(from, from + n)), bits(expectedSlot), what);
          }
        });
      }
    } finally {
      keep.destroy();
      keep.destroy(); // twice is fine
      for (const b of buffers) b.destroy();
    }
  });
});

describe('keep on a device with default limits', () => {
  let device: GPUDevice | undefined;
  const uncaptured: string[] = [];

  beforeAll(async () => {
    const found = await requestNodeDevice({ defaultLimits: true, label: 'webgpu-rmsprop keep tests (default limits)' });
    device = found.device;
    device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
    console.info(`default-limits device: ${describeLimits(device, found.adapter)}`);
  });

  afterAll(() => device?.destroy());

  test('kept bytes just over maxBufferSize / 2, then more: no scratch buffer past it, kept tensors bit for bit', async () => {
    const d = device!;
    const M = d.limits.maxBufferSize;
    const options = { centered: true, momentum: 0.9, lr: 0.01 }; // parameter and three state slots: 16 bytes an element
    const sizes = [M / 32 + 1031, 1031]; // tensor 0 kept: 16 * size = M/2 + 16,496 bytes
    expect(16 * sizes[0]!).toBeGreaterThan(M / 2);
    expect(16 * (sizes[0]! + sizes[1]!)).toBeLessThan(M);
    const random = rng(93);
    const values = sizes.map((n) => randomParams(n, random));
    const params = values.map((v, i) => upload(d, v, { label: `test.keepLimits.param[${i}]` }));
    const grads = sizes.map((n, i) => upload(d, new Float32Array(n), { label: `test.keepLimits.grad[${i}]` }));
    // No pre-pass: the tensors are independent, so the small one's twin is a twin of it alone.
    const specs = sizes.map((_, i) => ({ name: `t${i}`, param: params[i]!.binding, grad: grads[i]!.binding }));
    const optimizer = new RMSProp(d, specs, options);
    const small = { name: 't1', param: values[1]!.slice(), grad: new Float32Array(sizes[1]!) };
    const twin = cpuTwin([small], options);
    const scratch = watchBuffers(d, 'RMSProp.keep.scratch');
    const smallOnly = (p: Float32Array[], s: RMSPropState) => ({
      readParams: async () => [p[1]!],
      stateDict: async () => ({ ...s, tensors: [s.tensors[1]!] }),
    });
    try {
      await withErrorScopes(d, async () => {
        // Step 1 changes both (state no longer zero); steps 2 and 3 keep tensor 0, then both.
        for (const kept of [[], [0], [0, 1]]) {
          const g = sizes.map((n) => randomGrads(n, random));
          g.forEach((x, i) => write(d, grads[i]!.buffer, 0, x));
          small.grad.set(g[1]!);
          const before = await Promise.all([optimizer.readParams(), optimizer.stateDict()]);
          const encoder = d.createCommandEncoder({ label: 'test.keepLimits.step' });
          optimizer.step(encoder, { keep: kept });
          d.queue.submit([encoder.finish()]);
          twin.step(kept.includes(1) ? { keep: [0] } : undefined);
          const after = await Promise.all([optimizer.readParams(), optimizer.stateDict()]);
          for (const i of kept) {
            expectBitExact(bits(after[0][i]!), bits(before[0][i]!), `keep [${kept}]: param ${i}`);
            for (const slot of ['squareAvg', 'gradAvg', 'momentumBuffer'] as const) {
              const [a, b] = [after[1].tensors[i]![slot]!, before[1].tensors[i]![slot]!];
              expectBitExact(bits(a), bits(b), `keep [${kept}]: ${slot} ${i}`);
            }
          }
          if (kept.length === 0) {
            const head = (p: Float32Array) => bits(p.subarray(0, 1031));
            expect(head(after[0][0]!), 'tensor 0 stepped').not.toEqual(head(before[0][0]!));
          }
          await expectMatchesTwin(smallOnly(...after), twin, `keep [${kept}]: tensor 1`);
        }
      });
      expect(uncaptured).toEqual([]);
      expect(scratch.sizes.length, 'scratch buffers made').toBeGreaterThan(0);
      expect(Math.max(...scratch.sizes), `largest scratch buffer, maxBufferSize ${M}`).toBeLessThanOrEqual(M);
    } finally {
      scratch.restore();
      optimizer.destroy();
      for (const b of [...params, ...grads]) b.buffer.destroy();
    }
  });
});
