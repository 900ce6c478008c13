/**
 * Compute pipelines of the update rule, cached per device and per variant: a variant is the set of
 * override constants, and hyperparameters that change between steps live in a uniform instead.
 */
import shaderSource from '../shaders/rmsprop.wgsl?raw';
import reduceSource from '../shaders/grad-norm.wgsl?raw';
import { REDUCE_WORKGROUP_SIZE } from './reference.js';
import type { GradDtype, ResolvedOptions } from './options.js';

/** The GRAD_DTYPE override of both shaders. */
const GRAD_DTYPES: Record<GradDtype, number> = { f32: 0, f16: 1, bf16: 2 };
import { hasMaster, WORKGROUP_SIZE } from './plan.js';

export interface StepPipelines {
  /** One vec4 per invocation. */
  readonly body: GPUComputePipeline;
  /** The last 1 to 3 elements of a tensor. */
  readonly tail: GPUComputePipeline;
  /** With a master copy (16-bit parameters, masterWeights): fill it from the caller's parameters, once. */
  readonly initMaster?: { readonly body: GPUComputePipeline; readonly tail: GPUComputePipeline };
}

/** The override constants of shaders/rmsprop.wgsl for these options. */
export function variantConstants(o: ResolvedOptions): Record<string, number> {
  return {
    WORKGROUP_SIZE,
    CENTERED: Number(o.centered),
    MOMENTUM: Number(o.momentum > 0),
    LR_IN_MOMENTUM: Number(o.lrInMomentum),
    EPS_INSIDE: Number(o.epsMode === 'inside'),
    MAXIMIZE: Number(o.maximize),
    WEIGHT_DECAY: Number(o.weightDecay !== 0 && o.weightDecayMode === 'l2'),
    DECOUPLED_DECAY: Number(o.weightDecay !== 0 && o.weightDecayMode === 'decoupled'),
    NESTEROV: Number(o.nesterov && o.momentum > 0),
    BIAS_CORRECTION: Number(o.biasCorrection),
    SKIP_NON_FINITE: Number(o.skipNonFinite),
    CLIP: Number(o.clipGradNorm > 0),
    UNSCALE: Number(o.lossScale !== 1),
    GRAD_DTYPE: GRAD_DTYPES[o.gradDtype],
    PARAM_DTYPE: GRAD_DTYPES[o.paramDtype],
    MASTER: Number(hasMaster(o)),
  };
}

/** A short, readable key of a variant, e.g. `centered+momentum+epsInside`. Used in labels and the cache. */
export function variantKey(o: ResolvedOptions): string {
  const c = variantConstants(o);
  const names: [keyof typeof c, string][] = [
    ['CENTERED', 'centered'], ['MOMENTUM', 'momentum'], ['LR_IN_MOMENTUM', 'lrInMomentum'],
    ['EPS_INSIDE', 'epsInside'], ['MAXIMIZE', 'maximize'], ['WEIGHT_DECAY', 'weightDecay'],
    ['DECOUPLED_DECAY', 'decoupledDecay'], ['NESTEROV', 'nesterov'], ['BIAS_CORRECTION', 'biasCorrection'],
    ['SKIP_NON_FINITE', 'skipNonFinite'], ['CLIP', 'clip'], ['UNSCALE', 'unscale'],
  ];
  const flags = names.filter(([k]) => c[k]).map(([, n]) => n);
  if (o.gradDtype !== 'f32') flags.push(`grad${o.gradDtype.toUpperCase()}`);
  if (o.paramDtype !== 'f32') flags.push(`param${o.paramDtype.toUpperCase()}${hasMaster(o) ? '+master' : ''}`);
  return flags.join('+') || 'plain';
}

const cache = new WeakMap<GPUDevice, { module: GPUShaderModule; pipelines: Map<string, StepPipelines> }>();

/** The pipelines for `options`' variant on `device`, made on first use. */
export function stepPipelines(device: GPUDevice, options: ResolvedOptions): StepPipelines {
  let perDevice = cache.get(device);
  if (!perDevice) {
    perDevice = { module: device.createShaderModule({ label: 'RMSProp.shader', code: shaderSource }), pipelines: new Map() };
    cache.set(device, perDevice);
  }
  const key = variantKey(options);
  let pipelines = perDevice.pipelines.get(key);
  if (!pipelines) {
    const { module } = perDevice;
    const constants = variantConstants(options);
    const make = (entryPoint: string) => device.createComputePipeline({
      label: `RMSProp.pipeline[${key}].${entryPoint}`,
      layout: 'auto',
      compute: { module, entryPoint, constants },
    });
    // Entry points by what they bind: 16-bit parameters (Half) and 16-bit gradients (Packed).
    const suffix = (options.paramDtype !== 'f32' ? 'Half' : '') + (options.gradDtype !== 'f32' ? 'Packed' : '');
    pipelines = {
      body: make(`stepBody${suffix}`),
      tail: make(`stepTail${suffix}`),
      ...(hasMaster(options) ? { initMaster: { body: make('initMasterBody'), tail: make('initMasterTail') } } : {}),
    };
    perDevice.pipelines.set(key, pipelines);
  }
  return pipelines;
}

/** The pipelines of the gradient pre-pass (shaders/grad-norm.wgsl). */
export interface ReducePipelines {
  /** One partial sum of squares (and non-finite flag) per workgroup of a tensor. */
  readonly partials: GPUComputePipeline;
  /** One workgroup: the partials into the control buffer. */
  readonly finish: GPUComputePipeline;
}

const reduceCache = new WeakMap<GPUDevice, { module: GPUShaderModule; pipelines: Map<GradDtype, ReducePipelines> }>();

/** The pre-pass pipelines on `device` for gradients of `dtype`, made on first use. */
export function reducePipelines(device: GPUDevice, dtype: GradDtype = 'f32'): ReducePipelines {
  let perDevice = reduceCache.get(device);
  if (!perDevice) {
    perDevice = { module: device.createShaderModule({ label: 'RMSProp.gradNorm.shader', code: reduceSource }), pipelines: new Map() };
    reduceCache.set(device, perDevice);
  }
  let pipelines = perDevice.pipelines.get(dtype);
  if (!pipelines) {
    const { module } = perDevice;
    const make = (entryPoint: string) => device.createComputePipeline({
      label: `RMSProp.gradNorm.pipeline[${dtype}].${entryPoint}`,
      layout: 'auto',
      compute: { module, entryPoint, constants: { WORKGROUP_SIZE: REDUCE_WORKGROUP_SIZE, GRAD_DTYPE: GRAD_DTYPES[dtype] } },
    });
    pipelines = { partials: make(dtype === 'f32' ? 'partialNorms' : 'partialNormsPacked'), finish: make('finish') };
    perDevice.pipelines.set(dtype, pipelines);
  }
  return pipelines;
}
