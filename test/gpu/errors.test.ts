/**
 * Bad input: each mistake throws a TypeError or RangeError naming what was wrong, before any GPU
 * work (no buffer, bind group, pipeline, shader, encoder, write or submit), with the caller's
 * parameters unchanged. And use after destroy().
 */
import { afterEach, beforeEach, describe, expect } from 'vitest';
import { RMSProp, type ParamSpec, type RMSPropOptions, type RMSPropState } from '../../src/index.js';
import { attemptWatchingGpuWork, expectBitExact, gpuTest, NO_GPU_WORK, spyOnGpuWork, randomParams, readFloats, rng, upload, useDevice, type Placed } from './harness.js';

const gpu = useDevice();

const N = 1027;
let values: Float32Array, param: Placed, grad: Placed;

beforeEach(() => {
  values = randomParams(N, rng(1));
  param = upload(gpu.device, values, { label: 'test.w' });
  grad = upload(gpu.device, randomParams(N, rng(2)), { label: 'test.gw' });
});

afterEach(() => {
  param.buffer.destroy();
  grad.buffer.destroy();
});

/**
 * Asserts `attempt` throws `type` with a message matching `message`, with no GPU work started,
 * and that the parameter buffer still holds its values.
 */
async function expectRejected(device: GPUDevice, attempt: () => unknown, type: typeof TypeError | typeof RangeError, message: RegExp): Promise<void> {
  const { error, calls } = attemptWatchingGpuWork(device, attempt);
  expect(error, 'an exception').toBeInstanceOf(type);
  expect((error as Error).message).toMatch(message);
  expect(calls, 'GPU work before the error').toEqual(NO_GPU_WORK);
  expectBitExact(await readFloats(device, param.buffer), values, 'the parameter after the error');
}

const make = (device: GPUDevice, specs: ParamSpec[], options?: Partial<RMSPropOptions>) => () => new RMSProp(device, specs, options);

describe('the constructor rejects bad parameters', () => {
  gpuTest('param and grad of different sizes', gpu, async (device) => {
    const short = upload(device, new Float32Array(N - 1));
    await expectRejected(device, make(device, [{ param: param.buffer, grad: short.buffer, name: 'fc.w' }]), RangeError, /params\[0\] \('fc\.w'\): grad covers 4104 bytes but param covers 4108/);
    short.buffer.destroy();
  });

  gpuTest('a byte size that is not a multiple of 4', gpu, async (device) => {
    const spec = { param: { buffer: param.buffer, offset: 0, size: 10 }, grad: { buffer: grad.buffer, offset: 0, size: 10 }, name: 'odd' };
    await expectRejected(device, make(device, [spec]), RangeError, /params\[0\] \('odd'\)\.param covers 10 bytes, not a multiple of 4/);
  });

  gpuTest('a buffer without STORAGE usage', gpu, async (device) => {
    const plain = device.createBuffer({ label: 'no-storage', size: N * 4, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    await expectRejected(device, make(device, [{ param: param.buffer, grad: plain, name: 'b' }]), TypeError, /params\[0\] \('b'\)\.grad: buffer \('no-storage'\) lacks GPUBufferUsage\.STORAGE/);
    plain.destroy();
  });

  gpuTest('a binding offset not aligned to minStorageBufferOffsetAlignment', gpu, async (device) => {
    const align = device.limits.minStorageBufferOffsetAlignment;
    const big = upload(device, values, { offset: align, bufferSize: align * 2 + N * 4 });
    for (const offset of [4, align / 2, align + 4]) {
      const spec = { param: { buffer: big.buffer, offset, size: N * 4 }, grad: grad.buffer, name: 'shifted' };
      await expectRejected(device, make(device, [spec]), RangeError, new RegExp(`params\\[0\\] \\('shifted'\\)\\.param\\.offset is ${offset}, not a multiple of the device's minStorageBufferOffsetAlignment \\(${align}\\)`));
    }
    big.buffer.destroy();
  });

  gpuTest('no parameters', gpu, async (device) => {
    await expectRejected(device, make(device, []), RangeError, /params is empty/);
    await expectRejected(device, make(device, [{ params: [] }] as never), RangeError, /params\[0\]\.params is empty/);
  });

  gpuTest('the same parameter twice', gpu, async (device) => {
    const grad2 = upload(device, new Float32Array(N));
    const specs = [{ param: param.buffer, grad: grad.buffer, name: 'a' }, { param: param.buffer, grad: grad2.buffer, name: 'b' }];
    await expectRejected(device, make(device, specs), RangeError, /'b' repeats the parameter 'a'/);
    grad2.buffer.destroy();
  });
});

describe('the constructor rejects bad hyperparameters', () => {
  const bad: [keyof RMSPropOptions, unknown, typeof TypeError | typeof RangeError][] = [
    ['lr', NaN, RangeError], ['lr', Infinity, RangeError], ['lr', -1e-3, RangeError], ['lr', '0.01', TypeError],
    ['alpha', NaN, RangeError], ['alpha', 1.5, RangeError], ['alpha', -0.1, RangeError],
    ['eps', 0, RangeError], ['eps', Infinity, RangeError], ['eps', NaN, RangeError],
    ['momentum', -0.9, RangeError], ['momentum', NaN, RangeError],
    ['weightDecay', -0.01, RangeError], ['weightDecay', Infinity, RangeError],
    ['initialScale', -1, RangeError], ['initialScale', NaN, RangeError],
    ['epsMode', 'middle', TypeError], ['centered', 1, TypeError], ['maximize', 'yes', TypeError], ['lrInMomentum', null, TypeError],
  ];
  gpuTest(`${bad.length} bad values, in the options and in a param group`, gpu, async (device) => {
    for (const [key, value, type] of bad) {
      const spec = { param: param.buffer, grad: grad.buffer };
      await expectRejected(device, make(device, [spec], { [key]: value }), type, new RegExp(`options\\.${key}`));
      await expectRejected(device, make(device, [{ params: [spec], [key]: value }] as never), type, new RegExp(`params\\[0\\]\\.${key}`));
    }
  });

  gpuTest('an unknown option, named after another framework', gpu, async (device) => {
    await expectRejected(device, make(device, [{ param: param.buffer, grad: grad.buffer }], { rho: 0.9 } as never), TypeError, /options\.rho is not an RMSProp option: this library calls it 'alpha'/);
  });

  gpuTest('setting lr to NaN, Infinity or a negative number throws and keeps the old lr', gpu, async (device) => {
    const optimizer = new RMSProp(device, [{ param: param.buffer, grad: grad.buffer }], { lr: 0.02 });
    for (const lr of [NaN, Infinity, -1]) {
      await expectRejected(device, () => { optimizer.lr = lr; }, RangeError, /^lr must be a finite number >= 0/);
      expect(optimizer.lr).toBe(0.02);
    }
    optimizer.destroy();
  });
});

describe('use that cannot work', () => {
  gpuTest('loadStateDict of a mismatched state', gpu, async (device) => {
    const optimizer = new RMSProp(device, [{ param: param.buffer, grad: grad.buffer, name: 'w' }], { momentum: 0.9 });
    const state = await optimizer.stateDict();
    const wrong: RMSPropState = { ...state, tensors: [{ ...state.tensors[0]!, momentumBuffer: new Float32Array(3) }] };
    await expectRejected(device, () => optimizer.loadStateDict(wrong), RangeError, /tensor 0 \('w'\): momentumBuffer has 3 elements, expected 1027/);
    optimizer.destroy();
  });

  gpuTest('readParams() on a parameter without COPY_SRC rejects with a TypeError naming it, before any GPU work', gpu, async (device) => {
    const unreadable = upload(device, values, { usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: 'write-only' });
    const optimizer = new RMSProp(device, [{ param: param.buffer, grad: grad.buffer, name: 'ok' }, { param: unreadable.buffer, grad: grad.buffer, name: 'hidden' }]);
    const work = spyOnGpuWork(device);
    try {
      await expect(optimizer.readParams()).rejects.toThrow(TypeError);
      await expect(optimizer.readParams()).rejects.toThrow(/readParams\(\): 'hidden'\.param: buffer \('write-only'\) lacks GPUBufferUsage\.COPY_SRC/);
      expect(work.calls()).toEqual(NO_GPU_WORK);
    } finally {
      work.restore();
    }
    optimizer.destroy();
    unreadable.buffer.destroy();
  });

  gpuTest('step(), readParams(), stateDict() and loadStateDict() after destroy() throw, before any GPU work', gpu, async (device) => {
    const optimizer = new RMSProp(device, [{ param: param.buffer, grad: grad.buffer }]);
    const state = await optimizer.stateDict();
    optimizer.destroy();
    const work = spyOnGpuWork(device);
    try {
      // A plain Error (not a TypeError or RangeError): the arguments are fine, the object is spent.
      expect(() => optimizer.step()).toThrow(/RMSProp\.step\(\) after destroy\(\): create a new RMSProp/);
      expect(() => optimizer.step(device.createCommandEncoder())).toThrow(/step\(\) after destroy\(\)/);
      expect(() => optimizer.loadStateDict(state)).toThrow(/loadStateDict\(\) after destroy\(\)/);
      await expect(optimizer.readParams()).rejects.toThrow(/readParams\(\) after destroy\(\)/);
      await expect(optimizer.stateDict()).rejects.toThrow(/stateDict\(\) after destroy\(\)/);
      const calls = work.calls();
      expect({ ...calls, createCommandEncoder: 0 }).toEqual(NO_GPU_WORK); // the one encoder is the test's own
    } finally {
      work.restore();
    }
    expectBitExact(await readFloats(device, param.buffer), values, 'the parameter');
  });

  gpuTest('step(encoder) with something that is not an encoder', gpu, async (device) => {
    const optimizer = new RMSProp(device, [{ param: param.buffer, grad: grad.buffer }]);
    await expectRejected(device, () => optimizer.step({} as GPUCommandEncoder), TypeError, /step\(encoder\): encoder must be a GPUCommandEncoder/);
    expect(optimizer.stepCount).toBe(0);
    optimizer.destroy();
  });
});

