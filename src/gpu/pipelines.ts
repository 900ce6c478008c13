/**
 * Compute pipelines of the update rule and of the gradient pre-pass, cached per device and per
 * variant: a variant is the set of override constants, and hyperparameters that change between
 * steps live in buffers instead. Made synchronously (`stepPipelines`) or with
 * `createComputePipelineAsync` (`stepPipelinesAsync`, for `RMSProp.create`); both fill one cache.
 */
import shaderSource from '../../shaders/rmsprop.wgsl?raw';
import reduceSource from '../../shaders/grad-norm.wgsl?raw';
import { REDUCE_WORKGROUP_SIZE, reduceTargetPartials, usesLanePartials } from './reduce-plan.js';
import { blockwise8Layout } from './blockwise8-layout.js';
import type { GradDtype, ResolvedOptions } from '../rule/options.js';
import { hasMaster, WORKGROUP_SIZE } from './plan.js';

/** The GRAD_DTYPE / PARAM_DTYPE override of both shaders. */
const GRAD_DTYPES: Record<GradDtype, number> = { f32: 0, f16: 1, bf16: 2 };

// GPUShaderStage.COMPUTE, spelled out so that importing this module needs no WebGPU globals.
const COMPUTE = 0x4;

export interface StepPipelines {
  /** One vec4 per invocation. */
  readonly body: GPUComputePipeline;
  /** The last 1 to 3 elements of a tensor. */
  readonly tail: GPUComputePipeline;
  /** With a master copy (16-bit parameters, masterWeights): fill it from the caller's parameters, once. */
  readonly initMaster?: { readonly body: GPUComputePipeline; readonly tail: GPUComputePipeline };
  /** stateDtype 'int8-blockwise' (its tensors of 4096+): 8-bit state, in the device's layout. */
  readonly blockwise8?: Blockwise8Pipelines;
}

/**
 * The 8-bit state's step, body and tail in one dispatch a chunk, in the layout of the device
 * (src/gpu/blockwise8-layout.ts): `'workgroup'`, `vec4` for a chunk of whole vec4s (parameters and
 * gradients bound as vec4s, bindings 1 and 2) and `scalar` for any chunk (bindings 4 and 5); `'lanes'`,
 * one pipeline for any chunk (bindings 4 and 5).
 */
export type Blockwise8Pipelines =
  | { readonly layout: 'workgroup'; readonly vec4: GPUComputePipeline; readonly scalar: GPUComputePipeline }
  | { readonly layout: 'lanes'; readonly lanes: GPUComputePipeline };

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
  if (o.stateDtype !== 'f32') flags.push(o.stateDtype);
  return flags.join('+') || 'plain';
}

// ---------------------------------------------------------------------------------------------
// Bind group layouts of shaders/rmsprop.wgsl. Explicit (not 'auto'): the ring's binding has a
// dynamic offset, and every update pipeline shares one layout for group 1.
// ---------------------------------------------------------------------------------------------

type BindingKind = 'uniform' | 'storage' | 'read-only-storage';

/** Group 0's bindings (shaders/rmsprop.wgsl) and their kinds. */
const BINDING_KINDS: Record<number, BindingKind> = {
  0: 'uniform', 1: 'storage', 2: 'storage', 3: 'storage', 4: 'storage', 5: 'storage',
  6: 'uniform', 7: 'storage', 8: 'storage', 9: 'storage', 10: 'storage', 13: 'storage', 14: 'read-only-storage',
};

/** The group-0 bindings each entry point uses. */
const ENTRY_BINDINGS: Record<string, readonly number[]> = {
  stepBody: [0, 1, 2, 3, 6],
  stepBodyPacked: [0, 1, 3, 6, 7],
  stepBodyHalf: [0, 2, 3, 6, 9],
  stepBodyHalfPacked: [0, 3, 6, 7, 9],
  stepTail: [0, 3, 4, 5, 6],
  stepTailPacked: [0, 3, 4, 6, 8],
  stepTailHalf: [0, 3, 5, 6, 10],
  stepTailHalfPacked: [0, 3, 6, 8, 10],
  initMasterBody: [0, 3, 9],
  initMasterTail: [0, 3, 10],
  stepBlockwise8: [0, 1, 2, 6, 13, 14],
  stepBlockwise8Scalar: [0, 4, 5, 6, 13, 14],
  stepBlockwise8Lanes: [0, 4, 5, 6, 13, 14],
};

/** Entry points that read the step ring (group 1); initMaster* do not. */
const USES_RING = (entryPoint: string) => entryPoint.startsWith('step');

interface DeviceLayouts {
  readonly ring: GPUBindGroupLayout;
  readonly count: GPUBindGroupLayout;
  readonly group0: Map<string, GPUBindGroupLayout>;
  readonly pipeline: Map<string, GPUPipelineLayout>;
}

const layoutCache = new WeakMap<GPUDevice, DeviceLayouts>();

function layoutsOf(device: GPUDevice): DeviceLayouts {
  let layouts = layoutCache.get(device);
  if (!layouts) {
    const ring = device.createBindGroupLayout({
      label: 'RMSProp.bindGroupLayout.stepValues',
      entries: [{ binding: 0, visibility: COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } }],
    });
    const count = device.createBindGroupLayout({
      label: 'RMSProp.bindGroupLayout.countStep',
      entries: [
        { binding: 11, visibility: COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } },
        { binding: 12, visibility: COMPUTE, buffer: { type: 'storage' } },
      ],
    });
    layouts = { ring, count, group0: new Map(), pipeline: new Map() };
    layoutCache.set(device, layouts);
  }
  return layouts;
}

/**
 * The layout of group 1 of every update pipeline on `device`: a param group's cell in the step ring's
 * slot, at a dynamic offset (src/gpu/step-values.ts makes one bind group per page with it).
 */
export function stepValuesLayout(device: GPUDevice): GPUBindGroupLayout {
  return layoutsOf(device).ring;
}

/** The layout of `countStep`'s group 0: a cell of the step's slot (a dynamic offset) and its page's counters. */
export function countStepLayout(device: GPUDevice): GPUBindGroupLayout {
  return layoutsOf(device).count;
}

/** shaders/rmsprop.wgsl's `countStep` (one invocation: a step counts itself as run with its slot of the ring). */
function countStepDescriptor(device: GPUDevice): GPUComputePipelineDescriptor {
  return {
    label: 'RMSProp.pipeline.countStep',
    layout: device.createPipelineLayout({
      label: 'RMSProp.pipelineLayout.countStep',
      bindGroupLayouts: [countStepLayout(device)],
    }),
    compute: { module: moduleOf(device, 'step'), entryPoint: 'countStep' },
  };
}

/** `countStep`'s pipeline on `device`, made on first use. */
export function countStepPipeline(device: GPUDevice): GPUComputePipeline {
  return countCache.get(device, 'countStep', () => device.createComputePipeline(countStepDescriptor(device)));
}

/** `countStepPipeline`, made with createComputePipelineAsync. */
export function countStepPipelineAsync(device: GPUDevice): Promise<GPUComputePipeline> {
  return countCache.getAsync(device, 'countStep', () => device.createComputePipelineAsync(countStepDescriptor(device)));
}

/** The group-0 layout of `entryPoint` on `device`: what its bind groups are made with. */
export function entryLayout(device: GPUDevice, entryPoint: string): GPUBindGroupLayout {
  const layouts = layoutsOf(device);
  let layout = layouts.group0.get(entryPoint);
  if (!layout) {
    const bindings = ENTRY_BINDINGS[entryPoint];
    if (!bindings) throw new Error(`entryLayout: no entry point '${entryPoint}' in shaders/rmsprop.wgsl.`);
    layout = device.createBindGroupLayout({
      label: `RMSProp.bindGroupLayout.${entryPoint}`,
      entries: bindings.map((binding) => ({ binding, visibility: COMPUTE, buffer: { type: BINDING_KINDS[binding]! } })),
    });
    layouts.group0.set(entryPoint, layout);
  }
  return layout;
}

function pipelineLayout(device: GPUDevice, entryPoint: string): GPUPipelineLayout {
  const layouts = layoutsOf(device);
  let layout = layouts.pipeline.get(entryPoint);
  if (!layout) {
    const groups = [entryLayout(device, entryPoint), ...(USES_RING(entryPoint) ? [layouts.ring] : [])];
    layout = device.createPipelineLayout({ label: `RMSProp.pipelineLayout.${entryPoint}`, bindGroupLayouts: groups });
    layouts.pipeline.set(entryPoint, layout);
  }
  return layout;
}

// ---------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------

interface Entry<P> {
  /** Made, by either path. */
  ready?: P;
  /** Being made asynchronously. */
  pending?: Promise<P>;
}

/** Per device and key, one pipeline set, made once whichever path asks first. */
class PipelineCache<P> {
  readonly #devices = new WeakMap<GPUDevice, Map<string, Entry<P>>>();

  #entry(device: GPUDevice, key: string): Entry<P> {
    let perDevice = this.#devices.get(device);
    if (!perDevice) this.#devices.set(device, (perDevice = new Map()));
    let entry = perDevice.get(key);
    if (!entry) perDevice.set(key, (entry = {}));
    return entry;
  }

  /** The pipelines, made now (synchronously) unless already made. */
  get(device: GPUDevice, key: string, make: () => P): P {
    const entry = this.#entry(device, key);
    return (entry.ready ??= make());
  }

  /** The pipelines, made asynchronously unless already made or being made. */
  async getAsync(device: GPUDevice, key: string, make: () => Promise<P>): Promise<P> {
    const entry = this.#entry(device, key);
    if (entry.ready) return entry.ready;
    entry.pending ??= make().then((made) => (entry.ready ??= made), (e: unknown) => {
      entry.pending = undefined; // a later call may try again
      throw e;
    });
    return entry.pending;
  }
}

function isThenable<T>(x: T | Promise<T>): x is Promise<T> {
  return typeof (x as { then?: unknown }).then === 'function';
}

type Maker = (descriptor: GPUComputePipelineDescriptor) => GPUComputePipeline | Promise<GPUComputePipeline>;

const modules = new WeakMap<GPUDevice, { step?: GPUShaderModule; reduce?: GPUShaderModule }>();

/** The device's module of shaders/rmsprop.wgsl (`step`) or shaders/grad-norm.wgsl (`reduce`), made on first use. */
function moduleOf(device: GPUDevice, which: 'step' | 'reduce'): GPUShaderModule {
  let m = modules.get(device);
  if (!m) modules.set(device, (m = {}));
  return (m[which] ??= which === 'step'
    ? device.createShaderModule({ label: 'RMSProp.shader', code: shaderSource })
    : device.createShaderModule({ label: 'RMSProp.gradNorm.shader', code: reduceSource }));
}

/** The entry points of a variant, by what they bind: 16-bit parameters (Half) and 16-bit gradients (Packed). */
function stepEntryPoints(o: ResolvedOptions): { body: string; tail: string; master: boolean } {
  const suffix = (o.paramDtype !== 'f32' ? 'Half' : '') + (o.gradDtype !== 'f32' ? 'Packed' : '');
  return { body: `stepBody${suffix}`, tail: `stepTail${suffix}`, master: hasMaster(o) };
}

/** The group-0 layout of each update pipeline: what its bind groups are made with. */
const group0Layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();

/** The group-0 layout that `pipeline` (from `stepPipelines`) was made with. */
export function bindGroupLayoutOf(pipeline: GPUComputePipeline): GPUBindGroupLayout {
  const layout = group0Layouts.get(pipeline);
  if (!layout) throw new Error(`bindGroupLayoutOf: '${pipeline.label}' is not an update pipeline of this module.`);
  return layout;
}

function makeStep(device: GPUDevice, o: ResolvedOptions, create: Maker): StepPipelines | Promise<StepPipelines> {
  const module = moduleOf(device, 'step');
  const constants = variantConstants(o);
  const key = variantKey(o);
  const make = (entryPoint: string) => {
    const remember = (pipeline: GPUComputePipeline) => {
      group0Layouts.set(pipeline, entryLayout(device, entryPoint));
      return pipeline;
    };
    const made = create({
      label: `RMSProp.pipeline[${key}].${entryPoint}`,
      layout: pipelineLayout(device, entryPoint),
      compute: { module, entryPoint, constants },
    });
    return isThenable(made) ? made.then(remember) : remember(made);
  };
  const entry = stepEntryPoints(o);
  const layout = o.stateDtype === 'int8-blockwise' ? blockwise8Layout(device) : undefined;
  const blockwise8Entries = { workgroup: ['stepBlockwise8', 'stepBlockwise8Scalar'], lanes: ['stepBlockwise8Lanes'] };
  const parts = [
    make(entry.body),
    make(entry.tail),
    ...(entry.master ? [make('initMasterBody'), make('initMasterTail')] : []),
    ...(layout ? blockwise8Entries[layout].map(make) : []),
  ];
  const assemble = (made: GPUComputePipeline[]): StepPipelines => {
    const [body, tail, ...rest] = made;
    let blockwise8: Blockwise8Pipelines | undefined;
    if (layout === 'workgroup') blockwise8 = { layout, vec4: rest[0]!, scalar: rest[1]! };
    if (layout === 'lanes') blockwise8 = { layout, lanes: rest[0]! };
    return {
      body: body!,
      tail: tail!,
      ...(entry.master ? { initMaster: { body: rest[0]!, tail: rest[1]! } } : {}),
      ...(blockwise8 ? { blockwise8 } : {}),
    };
  };
  return parts.some(isThenable) ? Promise.all(parts).then(assemble) : assemble(parts as GPUComputePipeline[]);
}

const stepCache = new PipelineCache<StepPipelines>();
const countCache = new PipelineCache<GPUComputePipeline>();

/** The cache key of `options`' update pipelines on `device`: the variant, and the 8-bit state's layout. */
function stepKey(device: GPUDevice, options: ResolvedOptions): string {
  const key = variantKey(options);
  return options.stateDtype === 'int8-blockwise' ? `${key}.${blockwise8Layout(device)}` : key;
}

/** The update pipelines for `options`' variant on `device`, made on first use. */
export function stepPipelines(device: GPUDevice, options: ResolvedOptions): StepPipelines {
  return stepCache.get(
    device,
    stepKey(device, options),
    () => makeStep(device, options, (d) => device.createComputePipeline(d)) as StepPipelines,
  );
}

/** `stepPipelines`, made with createComputePipelineAsync (no compile stall on the calling thread). */
export function stepPipelinesAsync(device: GPUDevice, options: ResolvedOptions): Promise<StepPipelines> {
  return stepCache.getAsync(
    device,
    stepKey(device, options),
    async () => makeStep(device, options, (d) => device.createComputePipelineAsync(d)),
  );
}

/** The pipelines of the gradient pre-pass (shaders/grad-norm.wgsl). */
export interface ReducePipelines {
  /** One partial sum of squares (and non-finite flag) per block of a run. */
  readonly partials: GPUComputePipeline;
  /** One workgroup: the partials into the control buffer. */
  readonly finish: GPUComputePipeline;
}

function makeReduce(device: GPUDevice, dtype: GradDtype, create: Maker): ReducePipelines | Promise<ReducePipelines> {
  const module = moduleOf(device, 'reduce');
  const make = (entryPoint: string) => create({
    label: `RMSProp.gradNorm.pipeline[${dtype}].${entryPoint}`,
    layout: 'auto',
    compute: {
      module,
      entryPoint,
      constants: {
        WORKGROUP_SIZE: REDUCE_WORKGROUP_SIZE,
        GRAD_DTYPE: GRAD_DTYPES[dtype],
        LANE_PARTIALS: Number(usesLanePartials(reduceTargetPartials(device))), // the device's plan (reduce-plan.ts)
      },
    },
  });
  const parts = [make(dtype === 'f32' ? 'partialNorms' : 'partialNormsPacked'), make('finish')];
  const assemble = ([partials, finish]: GPUComputePipeline[]): ReducePipelines => ({
    partials: partials!,
    finish: finish!,
  });
  return parts.some(isThenable) ? Promise.all(parts).then(assemble) : assemble(parts as GPUComputePipeline[]);
}

const reduceCache = new PipelineCache<ReducePipelines>();

/** The pre-pass pipelines on `device` for gradients of `dtype`, made on first use. */
export function reducePipelines(device: GPUDevice, dtype: GradDtype = 'f32'): ReducePipelines {
  return reduceCache.get(
    device,
    dtype,
    () => makeReduce(device, dtype, (d) => device.createComputePipeline(d)) as ReducePipelines,
  );
}

/** `reducePipelines`, made with createComputePipelineAsync. */
export function reducePipelinesAsync(device: GPUDevice, dtype: GradDtype = 'f32'): Promise<ReducePipelines> {
  return reduceCache.getAsync(
    device,
    dtype,
    async () => makeReduce(device, dtype, (d) => device.createComputePipelineAsync(d)),
  );
}
