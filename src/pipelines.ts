/**
 * Compute pipelines of the update rule, cached per device and per variant: a variant is the set of
 * override constants, and hyperparameters that change between steps live in a uniform instead.
 */
import shaderSource from '../shaders/rmsprop.wgsl?raw';
import type { ResolvedOptions } from './options.js';
import { WORKGROUP_SIZE } from './plan.js';

export interface StepPipelines {
  /** One vec4 per invocation. */
  readonly body: GPUComputePipeline;
  /** The last 1 to 3 elements of a tensor. */
  readonly tail: GPUComputePipeline;
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
    WEIGHT_DECAY: Number(o.weightDecay !== 0),
  };
}

/** A short, readable key of a variant, e.g. `centered+momentum+epsInside`. Used in labels and the cache. */
export function variantKey(o: ResolvedOptions): string {
  const c = variantConstants(o);
  const names: [keyof typeof c, string][] = [
    ['CENTERED', 'centered'], ['MOMENTUM', 'momentum'], ['LR_IN_MOMENTUM', 'lrInMomentum'],
    ['EPS_INSIDE', 'epsInside'], ['MAXIMIZE', 'maximize'], ['WEIGHT_DECAY', 'weightDecay'],
  ];
  return names.filter(([k]) => c[k]).map(([, n]) => n).join('+') || 'plain';
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
    pipelines = { body: make('stepBody'), tail: make('stepTail') };
    perDevice.pipelines.set(key, pipelines);
  }
  return pipelines;
}
