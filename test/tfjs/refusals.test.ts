/**
 * Clear refusals (issue 12, item 4): each throws before any GPU work (no GPU call at all: the
 * device is watched), names what is wrong and the fix, and leaves the variables and the optimizer's
 * state bit-identical.
 */
import '@tensorflow/tfjs-backend-cpu';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { describe, expect } from 'vitest';
import { tfjsRMSProp, type WebGPURMSProp } from '../../src/tfjs/index.js';
import { attemptWatchingGpuWork, gpuTest, NO_GPU_WORK } from '../gpu/harness.js';
import { onGpu, readThroughOp, tf, useTfjs } from './harness.js';

const gpu = useTfjs();
let id = 0;

/** A trained variable and its optimizer, two steps in, with what a refused call must leave alone. */
async function trained(config = {}): Promise<{ v: tf.Variable; optimizer: WebGPURMSProp; snapshot: () => Promise<string>; dispose: () => void }> {
  const v = tf.variable(onGpu([0.5, -1, 2, 0.25]), true, `refusal${id++}/w`);
  const optimizer = tfjsRMSProp(tf, { momentum: 0.9, ...config });
  for (const g of [[1, 2, 3, 4], [-1, 0.5, 0, 2]]) {
    const t = onGpu(g);
    optimizer.applyGradients({ [v.name]: t });
    t.dispose();
  }
  const snapshot = async () => {
    const weights = await optimizer.getWeights();
    const values = await Promise.all(weights.map(async (w) => `${w.name}=${Array.from(await w.tensor.data()).join(',')}`));
    return `${Array.from(await readThroughOp(v)).join(',')} | ${values.join(' ')}`;
  };
  return { v, optimizer, snapshot, dispose: () => { optimizer.dispose(); v.dispose(); } };
}

/** Runs `attempt`, which must throw `error` (a constructor and a message pattern) and make no GPU call. */
function expectRefusal(device: GPUDevice, attempt: () => unknown, kind: ErrorConstructor, message: RegExp): void {
  const { error, calls } = attemptWatchingGpuWork(device, attempt);
  expect(error, 'it throws').toBeInstanceOf(kind);
  expect((error as Error).message).toMatch(message);
  expect(calls, 'no GPU work').toEqual(NO_GPU_WORK);
}

describe('a backend other than webgpu', () => {
  gpuTest('tfjsRMSProp refuses, saying how to register the WebGPU backend and naming the fallback', gpu, async (device) => {
    try {
      await tf.setBackend('cpu');
      expectRefusal(device, () => tfjsRMSProp(tf), TypeError, /active backend is 'cpu'.*setBackend\('webgpu'\).*fallback: 'tfjs'/s);
    } finally {
      await tf.setBackend('webgpu');
    }
  });

  gpuTest("fallback: 'tfjs' returns tf.train.rmsprop with the same options, and refuses extras it cannot honour", gpu, async (device) => {
    try {
      await tf.setBackend('cpu');
      const optimizer = tfjsRMSProp(tf, { learningRate: 0.02, decay: 0.8, momentum: 0.5, epsilon: 1e-6, centered: true, fallback: 'tfjs' });
      expect(optimizer).toBeInstanceOf(tf.RMSPropOptimizer);
      expect(optimizer.getConfig()).toEqual({ learningRate: 0.02, decay: 0.8, momentum: 0.5, epsilon: 1e-6, centered: true });
      optimizer.dispose();
      expectRefusal(device, () => tfjsRMSProp(tf, { clipGradNorm: 1, fallback: 'tfjs' }), TypeError, /tf\.train\.rmsprop, which has no clipGradNorm/);
    } finally {
      await tf.setBackend('webgpu');
    }
    // On the WebGPU backend the fallback changes nothing.
    const ours = tfjsRMSProp(tf, { fallback: 'tfjs' });
    expect(ours.getClassName()).toBe('WebGPURMSProp');
    ours.dispose();
  });

  gpuTest('a step after TF.js moved to another backend is refused; the state stays', gpu, async (device) => {
    const t = await trained();
    const before = await t.snapshot();
    const g = onGpu([1, 1, 1, 1]);
    try {
      await tf.setBackend('cpu');
      expectRefusal(device, () => t.optimizer.applyGradients({ [t.v.name]: g }), TypeError, /active backend is 'cpu'/);
    } finally {
      await tf.setBackend('webgpu');
      g.dispose();
    }
    expect(await t.snapshot()).toBe(before);
    t.dispose();
  });
});

describe('variables and gradients', () => {
  gpuTest('a variable that is not float32', gpu, async (device) => {
    const v = tf.variable(tf.tensor1d([1, 2], 'int32'), true, `refusal${id++}/int`);
    const g = tf.tensor1d([1, 1], 'int32');
    const optimizer = tfjsRMSProp(tf);
    expectRefusal(device, () => optimizer.applyGradients({ [v.name]: g }), TypeError, /variable '.*\/int' is int32; .* float32 variables only/);
    tf.dispose([v, g]);
    optimizer.dispose();
  });

  gpuTest('a gradient of another shape or dtype; an unknown variable name', gpu, async (device) => {
    const t = await trained();
    const before = await t.snapshot();
    const wrongShape = tf.ones([2, 2]), wrongType = tf.ones([4], 'int32');
    expectRefusal(device, () => t.optimizer.applyGradients({ [t.v.name]: wrongShape }), RangeError, /has shape \[2, 2\], the variable \[4\]/);
    expectRefusal(device, () => t.optimizer.applyGradients({ [t.v.name]: wrongType }), TypeError, /is int32; it must be float32/);
    expectRefusal(device, () => t.optimizer.applyGradients({ 'no such variable': wrongShape }), RangeError, /no variable named 'no such variable' is registered/);
    tf.dispose([wrongShape, wrongType]);
    expect(await t.snapshot()).toBe(before);
    t.dispose();
  });

  gpuTest('a variable that joins after the first step, with biasCorrection (its correction would start late)', gpu, async (device) => {
    const t = await trained({ biasCorrection: true });
    const before = await t.snapshot();
    const other = tf.variable(onGpu([1, 2, 3, 4]), true, `refusal${id++}/other`);
    const g = onGpu([1, 1, 1, 1]);
    expectRefusal(device, () => t.optimizer.applyGradients({ [t.v.name]: g, [other.name]: g }), RangeError,
      /'.*\/other' joins the variables .*biasCorrection.*unfreeze first/);
    expect(await t.snapshot()).toBe(before);
    tf.dispose([other, g]);
    t.dispose();
  });
});

describe('options', () => {
  gpuTest('this library\'s names for TF.js\'s options, 16-bit dtypes, unknown keys and values out of range', gpu, (device) => {
    expectRefusal(device, () => tfjsRMSProp(tf, { lr: 0.1 } as never), TypeError, /config\.lr: .*'learningRate'/);
    expectRefusal(device, () => tfjsRMSProp(tf, { alpha: 0.9 } as never), TypeError, /config\.alpha: .*'decay'/);
    expectRefusal(device, () => tfjsRMSProp(tf, { gradDtype: 'f16' } as never), TypeError, /config\.gradDtype: TF\.js variables and gradients are float32/);
    expectRefusal(device, () => tfjsRMSProp(tf, { rate: 0.1 } as never), TypeError, /config\.rate is not an option .* learningRate, decay/);
    expectRefusal(device, () => tfjsRMSProp(tf, { decay: 1.5 }), RangeError, /config\.decay must be in \[0, 1\]/);
    expectRefusal(device, () => tfjsRMSProp(tf, { epsilon: 0 }), RangeError, /config\.epsilon must be > 0/);
    expectRefusal(device, () => tfjsRMSProp(tf, { weightDecayMode: 'l1' } as never), TypeError, /config\.weightDecayMode must be 'l2'/);
    expectRefusal(device, () => tfjsRMSProp(tf, { fallback: 'cpu' } as never), TypeError, /config\.fallback must be 'tfjs'/);
  });

  gpuTest('a learning rate that is not a finite number >= 0 is refused and changes nothing', gpu, async (device) => {
    const t = await trained();
    expectRefusal(device, () => { t.optimizer.learningRate = Number.NaN; }, RangeError, /learningRate must be >= 0/);
    expectRefusal(device, () => { t.optimizer.learningRate = -1; }, RangeError, /learningRate must be >= 0/);
    expect(t.optimizer.learningRate).toBe(1e-3);
    t.dispose();
  });

  gpuTest('a disposed optimizer says so', gpu, async (device) => {
    const t = await trained();
    t.optimizer.dispose();
    const g = onGpu([1, 1, 1, 1]);
    expectRefusal(device, () => t.optimizer.applyGradients({ [t.v.name]: g }), Error, /was disposed\. Create a new one .* setWeights\(\) to resume/);
    await expect(t.optimizer.getWeights()).rejects.toThrow(/was disposed/);
    t.optimizer.dispose(); // twice is fine
    tf.dispose([g, t.v]);
  });
});

describe('a TF.js without the internals it needs', () => {
  gpuTest('is refused at the first step, naming what is missing, the version it is written for and the fallback', gpu, async (device) => {
    const v = tf.variable(onGpu([1, 2]), true, `refusal${id++}/internals`);
    const g = onGpu([1, 1]);
    const optimizer = tfjsRMSProp(tf);
    // A WebGPU backend as a future TF.js might have it: no submitQueue.
    const crippled = new WebGPUBackend(device);
    Object.defineProperty(crippled, 'submitQueue', { value: undefined });
    tf.registerBackend('webgpu-crippled', () => crippled);
    const realName = tf.getBackend();
    try {
      // The name check passes ('webgpu'), the internals do not: swap the backend object the engine hands out.
      const engine = tf.engine() as unknown as { backendInstance: unknown };
      const real = engine.backendInstance;
      engine.backendInstance = crippled;
      try {
        expect(tf.getBackend()).toBe(realName);
        expectRefusal(device, () => optimizer.applyGradients({ [v.name]: g }), TypeError,
          /lacks submitQueue\(\), internals the WebGPU RMSProp reads .*4\.22.*fallback: 'tfjs'/s);
      } finally {
        engine.backendInstance = real;
      }
    } finally {
      tf.removeBackend('webgpu-crippled');
      tf.dispose([v, g]);
      optimizer.dispose();
    }
  });
});
