/**
 * GPU-against-reference checks that run inside the page, on the browser's own navigator.gpu.
 * Each case in ./cases.ts runs inside error scopes (validation, internal, out-of-memory); the page
 * sets `window.__results` (./cases.ts `PageResults`) when done, and logs one line per case.
 */
import {
  RMSProp,
  createReferenceState,
  referenceStep,
  detectMultiplyAdd,
  reduceTargetPartials,
  resolveOptions,
  type MultiplyAdd,
  type RMSPropOptions,
  type RMSPropState,
  type ReferenceState,
} from '../../../src/index';
import { stepHyper } from '../../../src/rule/reference';
import { CheckedReference } from '../../../demo/check/checked-reference';
import { boundStep, zeroBounds, type TensorBounds } from '../../../demo/check/bound';
import { compareTensor, toleranceFor, type Tolerance } from '../../../demo/check/compare';
import {
  CASES,
  type AdapterReport,
  type CaseResult,
  type CaseSpec,
  type EncoderCase,
  type GroupsCase,
  type LrCase,
  type PageResults,
  type ReferenceCase,
  type StateDictCase,
} from './cases';
import { bitEqual, compareUlps } from './ulp';
import { mulberry32 } from '../../../demo/problems/random';

/** Elements of untouchable padding around each guarded tensor: 256 bytes keeps bindings aligned. */
const GUARD = 64;
const GUARD_BYTES = GUARD * 4;
/** What padding holds; any other bit pattern there means a write out of bounds. */
const SENTINEL = -1234.5;
/** Per-case limit, so that a hung map or a lost device reports instead of stalling the page. */
const CASE_TIMEOUT_MS = 60_000;

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** How the adapter's WGSL `fma` rounds (probed once the device exists); every CPU twin rounds the same. */
let multiplyAdd: MultiplyAdd = 'fused';
/** The pre-pass's target partials on this page's adapter (`reduceTargetPartials`): the twins' order of additions. */
let reducePartials = 4096;

/**
 * The adapter's tolerance (set once the adapter is known): 0 ULPs on SwiftShader, Chromium's
 * WebGPU without a GPU, where it is measured; the WGSL bound elsewhere. `?tolerance=bound` in the
 * page's URL uses the bound everywhere (to exercise it).
 */
let tolerance: Tolerance = toleranceFor('');

// ---------------------------------------------------------------------------------------------
// Data: deterministic, and free of cancellations (see ./cases.ts).

const generator = mulberry32;

function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** A Float32Array over a plain ArrayBuffer, as queue.writeBuffer takes it. */
type F32 = Float32Array<ArrayBuffer>;

interface Data {
  /** Initial parameters, in ±[2, 4). */
  readonly p0: F32;
  /** One gradient per step; each element keeps one sign over the steps, magnitudes in [0.5, 1). */
  readonly grads: readonly F32[];
}

function makeData(name: string, size: number, steps: number): Data {
  const random = generator(seedOf(name));
  const sign = () => (random() < 0.5 ? -1 : 1);
  const p0 = Float32Array.from({ length: size }, () => sign() * (2 + 2 * random()));
  const signs = Array.from({ length: size }, sign);
  const grads = Array.from({ length: steps }, () => Float32Array.from(signs, (s) => s * (0.5 + 0.5 * random())));
  return { p0, grads };
}

// ---------------------------------------------------------------------------------------------
// GPU helpers.

interface Guarded {
  readonly buffer: GPUBuffer;
  /** The tensor's range, GUARD elements into the buffer. */
  readonly binding: GPUBufferBinding;
  readonly size: number;
}

/** A buffer holding `values` between two GUARD-element bands of SENTINEL. */
function guardedBuffer(device: GPUDevice, label: string, values: Float32Array): Guarded {
  const buffer = device.createBuffer({ label, size: (GUARD + values.length + GUARD) * 4, usage: USAGE, mappedAtCreation: true });
  const all = new Float32Array(buffer.getMappedRange());
  all.fill(SENTINEL);
  all.set(values, GUARD);
  buffer.unmap();
  return { buffer, binding: { buffer, offset: GUARD_BYTES, size: values.length * 4 }, size: values.length };
}

function bufferWith(device: GPUDevice, label: string, values: Float32Array, usage = USAGE): GPUBuffer {
  const buffer = device.createBuffer({ label, size: values.byteLength, usage, mappedAtCreation: true });
  new Float32Array(buffer.getMappedRange()).set(values);
  buffer.unmap();
  return buffer;
}

/** The whole of `buffer` (which needs COPY_SRC), through a staging buffer that is always destroyed. */
async function readBuffer(device: GPUDevice, buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ label: `checks.staging(${buffer.label})`, size: buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: 'checks.readBuffer' });
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const copy = new Float32Array(staging.getMappedRange()).slice();
    staging.unmap();
    return copy;
  } finally {
    staging.destroy();
  }
}

/** Positions in a guarded buffer's contents, outside `[start, start + size)` ranges, that lost their SENTINEL. */
function guardDamage(all: Float32Array, ranges: readonly { start: number; size: number }[]): string[] {
  const sentinel = new Float32Array([SENTINEL]);
  const damaged: number[] = [];
  for (let i = 0; i < all.length; i++) {
    if (ranges.some((r) => i >= r.start && i < r.start + r.size)) continue;
    if (!bitEqual(all.subarray(i, i + 1), sentinel)) damaged.push(i);
  }
  return damaged.length === 0 ? [] : [`${damaged.length} element(s) outside the tensors were written, first at [${damaged[0]}] = ${all[damaged[0]!]}`];
}

/** Runs `body` inside validation, internal and out-of-memory error scopes; their errors become problems. */
async function inErrorScopes<T>(device: GPUDevice, body: () => Promise<T>): Promise<{ value?: T; thrown?: unknown; scopeErrors: string[] }> {
  const filters: GPUErrorFilter[] = ['validation', 'internal', 'out-of-memory'];
  for (const f of filters) device.pushErrorScope(f);
  let value: T | undefined, thrown: unknown;
  try {
    value = await body();
  } catch (error) {
    thrown = error ?? new Error('(thrown undefined)');
  }
  const scopeErrors: string[] = [];
  for (const f of [...filters].reverse()) {
    const error = await device.popErrorScope();
    if (error) scopeErrors.push(`${f} error: ${error.message}`);
  }
  return { ...(thrown === undefined ? { value: value as T } : { thrown }), scopeErrors };
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

/** Per element, how far the GPU may be from a reference run (demo/check/bound.ts), for each array of one tensor. */
interface Bounds {
  readonly param?: ArrayLike<number> | undefined;
  readonly squareAvg?: ArrayLike<number> | undefined;
  readonly gradAvg?: ArrayLike<number> | undefined;
  readonly momentumBuffer?: ArrayLike<number> | undefined;
}

/** Collects GPU-vs-reference distances over a case, at the adapter's tolerance, with the worst place. */
class Comparison {
  maxUlps = 0;
  boundUsed = 0;
  within = true;
  worst = '';
  readonly perArray = new Map<string, number>();

  add(what: string, got: Float32Array | undefined, want: Float32Array | undefined, bound: ArrayLike<number> | undefined, problems: string[]): void {
    if (got === undefined || want === undefined) {
      if (got !== want) problems.push(`${what}: the GPU ${got ? 'has' : 'lacks'} it but the reference ${want ? 'has' : 'lacks'} it`);
      return;
    }
    if (got.length !== want.length) {
      problems.push(`${what}: ${got.length} GPU values against ${want.length} in the reference`);
      this.within = false;
      return;
    }
    const r = compareTensor(got, want, bound, tolerance.kind);
    if (!r.pass) this.within = false;
    if (r.cpuNonFinite >= 0) problems.push(`${what}: the reference has a non-finite value at [${r.cpuNonFinite}]`);
    if (!Number.isNaN(r.boundUsed)) this.boundUsed = Math.max(this.boundUsed, r.boundUsed);
    const key = what.replace(/\[.*$/, '').replace(/^.*\./, '');
    this.perArray.set(key, Math.max(this.perArray.get(key) ?? 0, r.worstUlps));
    if (r.worstUlps > this.maxUlps) {
      this.maxUlps = r.worstUlps;
      this.worst = `${what}[${r.index}]: GPU ${r.gpu} vs reference ${r.cpu}`;
    }
  }

  /** Parameters and every state slot of one tensor. */
  addTensor(what: string, p: Float32Array, pRef: Float32Array, state: ReferenceState, ref: ReferenceState, bounds: Bounds | undefined, problems: string[]): void {
    this.add(`${what}.param`, p, pRef, bounds?.param, problems);
    this.add(`${what}.squareAvg`, state.squareAvg, ref.squareAvg, bounds?.squareAvg, problems);
    this.add(`${what}.gradAvg`, state.gradAvg, ref.gradAvg, bounds?.gradAvg, problems);
    this.add(`${what}.momentumBuffer`, state.momentumBuffer, ref.momentumBuffer, bounds?.momentumBuffer, problems);
  }

  summary(): string {
    const parts = [...this.perArray].map(([k, v]) => `${k} ${v}`).join(', ');
    const used = tolerance.kind === 'bound' ? `, ${(100 * this.boundUsed).toPrecision(3)}% of the WGSL bound` : '';
    return `max ${this.maxUlps} ULPs (${parts})${used} [${tolerance.label}]${this.maxUlps > 0 ? `; worst ${this.worst}` : ''}`;
  }
}

/**
 * Whether another run (`other`: the reference with the feature under test changed, say) would pass
 * as the reference's result at the adapter's tolerance: then a case cannot tell the two apart.
 * Also the largest distance in ULPs, for the summary.
 */
function indistinguishable(ref: { p: Float32Array; state: ReferenceState; bounds?: Bounds }, other: { p: Float32Array; state: ReferenceState }): { same: boolean; ulps: number } {
  const pairs: [Float32Array | undefined, Float32Array | undefined, ArrayLike<number> | undefined][] = [
    [other.p, ref.p, ref.bounds?.param], [other.state.squareAvg, ref.state.squareAvg, ref.bounds?.squareAvg],
    [other.state.gradAvg, ref.state.gradAvg, ref.bounds?.gradAvg], [other.state.momentumBuffer, ref.state.momentumBuffer, ref.bounds?.momentumBuffer],
  ];
  let same = true, ulps = 0;
  for (const [a, b, bound] of pairs) {
    if (!a || !b) continue;
    const r = compareTensor(a, b, bound, tolerance.kind);
    same &&= r.pass;
    ulps = Math.max(ulps, r.worstUlps);
  }
  return { same, ulps };
}

/** A reference's first tensor: parameters, state, and (where the tolerance needs it, or always for the report) its bound. */
async function firstTensor(reference: CheckedReference): Promise<{ p: Float32Array; state: ReferenceState; bounds?: Bounds }> {
  const [[p], saved, bounds] = await Promise.all([reference.readParams(), reference.stateDict(), reference.bounds()]);
  const b = bounds ? { param: bounds.params[0], ...bounds.state[0] } : undefined;
  return { p: p!, state: saved.tensors[0]!, ...(b ? { bounds: b } : {}) };
}

/** The reference's parameters, state and bound after `grads`, one step each (an optimizer of one tensor). */
async function referenceRun(p0: Float32Array, grads: readonly Float32Array[], options: Partial<RMSPropOptions>): Promise<{ p: Float32Array; state: ReferenceState; bounds?: Bounds }> {
  const grad = new Float32Array(p0.length);
  const reference = new CheckedReference([{ param: p0.slice(), grad, name: 'w' }], options, { multiplyAdd, reducePartials });
  for (const g of grads) {
    grad.set(g);
    reference.step();
  }
  return firstTensor(reference);
}

function stateBitEqual(a: RMSPropState, b: RMSPropState, problems: string[], what: string): void {
  if (a.step !== b.step) problems.push(`${what}: step ${a.step} vs ${b.step}`);
  if (a.groups.length !== b.groups.length) problems.push(`${what}: ${a.groups.length} vs ${b.groups.length} groups`);
  a.groups.forEach((g, i) => {
    const o = b.groups[i]?.options;
    if (JSON.stringify(g.options) !== JSON.stringify(o)) problems.push(`${what}: group ${i} options ${JSON.stringify(g.options)} vs ${JSON.stringify(o)}`);
  });
  if (a.tensors.length !== b.tensors.length) problems.push(`${what}: ${a.tensors.length} vs ${b.tensors.length} tensors`);
  a.tensors.forEach((t, i) => {
    const u = b.tensors[i];
    if (!u || t.name !== u.name || t.size !== u.size) {
      problems.push(`${what}: tensor ${i} is '${t.name}' (${t.size}) vs '${u?.name}' (${u?.size})`);
      return;
    }
    for (const slot of ['squareAvg', 'gradAvg', 'momentumBuffer'] as const) {
      const x = t[slot], y = u[slot];
      if (x === undefined && y === undefined) continue;
      if (!x || !y || !bitEqual(x, y)) problems.push(`${what}: tensor '${t.name}'.${slot} differs in its bits`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Cases.

interface Outcome {
  maxUlps: number;
  /** Every GPU-vs-reference element within the adapter's tolerance. */
  within: boolean;
  boundUsed: number;
  problems: string[];
  summary: string;
}

const outcome = (cmp: Comparison, problems: string[], summary: string): Outcome => ({ maxUlps: cmp.maxUlps, within: cmp.within, boundUsed: cmp.boundUsed, problems, summary });

async function referenceCase(device: GPUDevice, c: ReferenceCase): Promise<Outcome> {
  const { p0, grads } = makeData(c.name, c.size, c.steps);
  const param = guardedBuffer(device, `checks.param(${c.size})`, p0);
  const grad = guardedBuffer(device, `checks.grad(${c.size})`, new Float32Array(c.size));
  const optimizer = new RMSProp(device, [{ param: param.binding, grad: grad.binding, name: 'w' }], c.options);
  const problems: string[] = [];
  try {
    for (const g of grads) {
      device.queue.writeBuffer(grad.buffer, GUARD_BYTES, g);
      optimizer.step();
    }
    const [p] = await optimizer.readParams();
    const saved = await optimizer.stateDict();
    const state = saved.tensors[0]!;
    const ref = await referenceRun(p0, grads, c.options);
    const cmp = new Comparison();
    cmp.addTensor('w', p!, ref.p, state, ref.state, ref.bounds, problems);
    problems.push(...guardDamage(await readBuffer(device, param.buffer), [{ start: GUARD, size: c.size }]).map((m) => `param buffer: ${m}`));
    problems.push(...guardDamage(await readBuffer(device, grad.buffer), [{ start: GUARD, size: c.size }]).map((m) => `grad buffer: ${m}`));
    let foilNote = '';
    if (c.foil) {
      const { same, ulps } = indistinguishable(ref, await referenceRun(p0, grads, c.foil));
      foilNote = `; the foil ${JSON.stringify(c.foil)} is ${ulps} ULPs away`;
      if (same) problems.push(`the reference with ${JSON.stringify(c.foil)} is within the tolerance (${tolerance.label}, ${ulps} ULPs): this case cannot tell the variant apart`);
    }
    return outcome(cmp, problems, `${c.steps} steps on ${c.size} elements: ${cmp.summary()}${foilNote}`);
  } finally {
    optimizer.destroy();
    param.buffer.destroy();
    grad.buffer.destroy();
  }
}

/** The caller's own pass: the gradient of sum((p - goal)^2), read from the parameters the optimizer trains. */
const GRADIENT_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> param: array<f32>;
@group(0) @binding(1) var<storage, read> goal: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn gradient(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= arrayLength(&grad)) { return; }
  grad[i] = 2.0 * (param[i] - goal[i]);
}`;

/** What the gradient pass computes, on the CPU: a subtraction and an exact doubling, each correctly rounded in WGSL. */
function cpuGradient(p: Float32Array, goal: Float32Array): F32 {
  return Float32Array.from(p, (x, i) => 2 * Math.fround(x - goal[i]!));
}

/**
 * How far the GPU's gradient pass may be from cpuGradient, its parameters being within `paramError`
 * of the CPU's: WGSL's subtraction within 1 ULP (the CPU's within half), times an exact 2.
 */
function gradientError(p: Float32Array, goal: Float32Array, paramError: ArrayLike<number>): Float64Array {
  return Float64Array.from(p, (x, i) => {
    const e = paramError[i]!, d = Math.abs(x - goal[i]!);
    return 2 * (e + 2 ** -23 * (d + e) + 2 ** -24 * d) + 2 ** -125;
  });
}

async function encoderCase(device: GPUDevice, c: EncoderCase): Promise<Outcome> {
  const n = c.size, steps = c.encoders * c.stepsPerEncoder;
  const { p0 } = makeData(c.name, n, 0);
  const random = generator(seedOf(`${c.name}/goal`));
  const goal = Float32Array.from({ length: n }, () => 8 + 4 * random()); // p - goal in [-12, -4]: no cancellation
  const param = bufferWith(device, 'checks.encoder.param', p0);
  const goalBuffer = bufferWith(device, 'checks.encoder.goal', goal);
  const grad = bufferWith(device, 'checks.encoder.grad', new Float32Array(n));
  const snapshots = device.createBuffer({ label: 'checks.encoder.snapshots', size: steps * n * 4, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  const module = device.createShaderModule({ label: 'checks.gradient', code: GRADIENT_WGSL });
  const pipeline = device.createComputePipeline({ label: 'checks.gradient', layout: 'auto', compute: { module, entryPoint: 'gradient' } });
  const bindGroup = device.createBindGroup({
    label: 'checks.gradient',
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: param } }, { binding: 1, resource: { buffer: goalBuffer } }, { binding: 2, resource: { buffer: grad } }],
  });
  const optimizer = new RMSProp(device, [{ param, grad, name: 'w' }], c.options);
  const problems: string[] = [];
  try {
    let k = 0;
    for (let e = 0; e < c.encoders; e++) {
      const encoder = device.createCommandEncoder({ label: `checks.encoder[${e}]` });
      for (let s = 0; s < c.stepsPerEncoder; s++, k++) {
        const pass = encoder.beginComputePass({ label: 'checks.gradientPass' });
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(Math.ceil(n / 64));
        pass.end();
        optimizer.step(encoder);
        encoder.copyBufferToBuffer(param, 0, snapshots, k * n * 4, n * 4); // sees this step's update
      }
      device.queue.submit([encoder.finish()]);
    }
    if (optimizer.stepCount !== steps) problems.push(`stepCount is ${optimizer.stepCount} after ${steps} recorded steps`);
    const all = await readBuffer(device, snapshots);
    const saved = await optimizer.stateDict();

    const cmp = new Comparison();
    const p = p0.slice(), state = createReferenceState(n, c.options);
    // The GPU computes its gradient from its own parameters: the bound carries that gradient's error too.
    const o = resolveOptions(c.options);
    const bounds: TensorBounds = zeroBounds(n, o);
    // The foil: an optimizer pass that ran before the gradient pass would see the previous step's gradient.
    const pLag = p0.slice(), stateLag = createReferenceState(n, c.options);
    let lagGrad = new Float32Array(n);
    for (let s = 0; s < steps; s++) {
      const g = cpuGradient(p, goal);
      boundStep({ param: p.slice(), squareAvg: state.squareAvg.slice(), gradAvg: state.gradAvg?.slice(), momentumBuffer: state.momentumBuffer?.slice() },
        g, o, stepHyper(o, { step: s + 1 }), multiplyAdd, 0, bounds, gradientError(p, goal, bounds.param));
      referenceStep(p, g, state, c.options, multiplyAdd);
      cmp.add(`step ${s + 1}: w.param`, all.subarray(s * n, (s + 1) * n), p, bounds.param, problems);
      const next = cpuGradient(pLag, goal);
      referenceStep(pLag, lagGrad, stateLag, c.options, multiplyAdd);
      lagGrad = next;
    }
    const ref = { p, state, bounds: { param: bounds.param, squareAvg: bounds.squareAvg, gradAvg: bounds.gradAvg, momentumBuffer: bounds.momentumBuffer } };
    cmp.addTensor('w', all.subarray((steps - 1) * n), p, saved.tensors[0]!, state, ref.bounds, problems);
    const { same, ulps } = indistinguishable(ref, { p: pLag, state: stateLag });
    if (same) problems.push(`a gradient one step stale is within the tolerance (${tolerance.label}, ${ulps} ULPs): this case cannot tell the pass order`);
    return outcome(cmp, problems, `${c.encoders} encoders x ${c.stepsPerEncoder} (gradient pass, step, copy): ${cmp.summary()}; a stale gradient is ${ulps} ULPs away`);
  } finally {
    optimizer.destroy();
    for (const b of [param, goalBuffer, grad, snapshots]) b.destroy();
  }
}

async function lrCase(device: GPUDevice, c: LrCase): Promise<Outcome> {
  const n = c.size;
  const { p0, grads } = makeData(c.name, n, 5);
  const param = bufferWith(device, 'checks.lr.param', p0), grad = bufferWith(device, 'checks.lr.grad', new Float32Array(n));
  const options = { ...c.options, lr: 0.01 };
  const optimizer = new RMSProp(device, [{ param, grad, name: 'w' }], options);
  const refParam = p0.slice(), refGrad = new Float32Array(n);
  const reference = new CheckedReference([{ param: refParam, grad: refGrad, name: 'w' }], options, { multiplyAdd, reducePartials });
  const problems: string[] = [];
  const lrs: number[] = [];
  const feed = (s: number) => {
    device.queue.writeBuffer(grad, 0, grads[s]!);
    refGrad.set(grads[s]!);
  };
  try {
    feed(0); optimizer.step(); reference.step(); lrs.push(0.01);

    optimizer.lr = 0.003; reference.lr = 0.003;
    if (optimizer.lr !== 0.003) problems.push(`lr reads ${optimizer.lr} after setting 0.003`);
    feed(1); optimizer.step(); reference.step(); lrs.push(0.003);

    // Two steps in one encoder with lr changed between them: each runs with its own lr.
    feed(2);
    const encoder = device.createCommandEncoder({ label: 'checks.lr.encoder' });
    optimizer.step(encoder);
    optimizer.lr = 0.03;
    optimizer.step(encoder);
    device.queue.submit([encoder.finish()]);
    reference.step(); lrs.push(0.003);
    reference.lr = 0.03;
    reference.step(); lrs.push(0.03);

    feed(3); optimizer.step(); reference.step(); lrs.push(0.03);

    optimizer.lr = 0; reference.lr = 0; // lr 0: the state moves, the parameters do not
    feed(4); optimizer.step(); reference.step(); lrs.push(0);

    if (optimizer.stepCount !== 6) problems.push(`stepCount is ${optimizer.stepCount} after 6 steps`);
    if (optimizer.groupOptions[0]?.lr !== 0) problems.push(`groupOptions[0].lr is ${optimizer.groupOptions[0]?.lr}, expected 0`);
    const [p] = await optimizer.readParams();
    const saved = await optimizer.stateDict();
    const ref = await firstTensor(reference);
    const cmp = new Comparison();
    cmp.addTensor('w', p!, ref.p, saved.tensors[0]!, ref.state, ref.bounds, problems);
    // The foil: lr 0.01 throughout (the steps the GPU took, without the changes).
    const { same, ulps } = indistinguishable(ref, await referenceRun(p0, [grads[0]!, grads[1]!, grads[2]!, grads[2]!, grads[3]!, grads[4]!], options));
    if (same) problems.push(`a constant lr of 0.01 is within the tolerance (${tolerance.label}, ${ulps} ULPs): the lr changes did not show`);
    return outcome(cmp, problems, `lr ${lrs.join(' -> ')}: ${cmp.summary()}; constant lr is ${ulps} ULPs away`);
  } finally {
    optimizer.destroy();
    param.destroy();
    grad.destroy();
  }
}

async function stateDictCase(device: GPUDevice, c: StateDictCase): Promise<Outcome> {
  const n = c.size;
  const { p0, grads } = makeData(c.name, n, 5);
  const owned: GPUBuffer[] = [];
  const buffer = (label: string, values: Float32Array) => {
    const b = bufferWith(device, label, values);
    owned.push(b);
    return b;
  };
  const problems: string[] = [];
  const pA = buffer('checks.stateDict.pA', p0), gA = buffer('checks.stateDict.gA', new Float32Array(n));
  const a = new RMSProp(device, [{ param: pA, grad: gA, name: 'w' }], c.options);
  const optimizers = [a];
  try {
    for (const g of grads.slice(0, 3)) {
      device.queue.writeBuffer(gA, 0, g);
      a.step();
    }
    a.lr = 0.005;
    const saved = await a.stateDict();
    const [pSaved] = await a.readParams();
    if (saved.step !== 3 || saved.groups[0]?.options.lr !== 0.005) {
      problems.push(`stateDict() has step ${saved.step} and lr ${saved.groups[0]?.options.lr}, expected 3 and 0.005`);
    }

    // GPU -> GPU: a new optimizer (lr 0.01) over a copy of the parameters takes the state bit for bit.
    const pB = buffer('checks.stateDict.pB', pSaved!), gB = buffer('checks.stateDict.gB', new Float32Array(n));
    const b = new RMSProp(device, [{ param: pB, grad: gB, name: 'w' }], c.options);
    optimizers.push(b);
    b.loadStateDict(saved);
    if (b.lr !== 0.005 || b.stepCount !== 3) problems.push(`after loadStateDict, lr ${b.lr} and stepCount ${b.stepCount}, expected 0.005 and 3`);
    stateBitEqual(await b.stateDict(), saved, problems, 'loaded GPU state vs saved');

    // Both go on in lockstep: same device, same pipeline, same inputs -> the same bits.
    for (const g of grads.slice(3)) {
      device.queue.writeBuffer(gA, 0, g);
      device.queue.writeBuffer(gB, 0, g);
      a.step();
      b.step();
    }
    const [pA5] = await a.readParams(), [pB5] = await b.readParams();
    if (!bitEqual(pA5!, pB5!)) problems.push(`parameters differ in their bits after 2 more steps on the original and the restored optimizer (${compareUlps(pB5!, pA5!).maxUlps} ULPs)`);
    const savedA5 = await a.stateDict();
    stateBitEqual(await b.stateDict(), savedA5, problems, 'restored vs original after 2 steps');

    // GPU -> CPU: the reference optimizer resumes from the same state, within tolerance of the GPU.
    const refParam = pSaved!.slice(), refGrad = new Float32Array(n);
    const reference = new CheckedReference([{ param: refParam, grad: refGrad, name: 'w' }], c.options, { multiplyAdd, reducePartials });
    reference.loadStateDict(saved); // the same bits on both sides: the bound starts at 0
    for (const g of grads.slice(3)) {
      refGrad.set(g);
      reference.step();
    }
    const cmp = new Comparison();
    const refSaved = await reference.stateDict();
    const ref = await firstTensor(reference);
    cmp.addTensor('w', pA5!, ref.p, savedA5.tensors[0]!, ref.state, ref.bounds, problems);

    // CPU -> GPU: the reference's state loads into a fresh GPU optimizer bit for bit.
    const pC = buffer('checks.stateDict.pC', refParam), gC = buffer('checks.stateDict.gC', new Float32Array(n));
    const cOpt = new RMSProp(device, [{ param: pC, grad: gC, name: 'w' }], c.options);
    optimizers.push(cOpt);
    cOpt.loadStateDict(refSaved);
    stateBitEqual(await cOpt.stateDict(), refSaved, problems, 'CPU state loaded into the GPU vs the CPU state');

    return outcome(cmp, problems, `GPU->GPU and CPU->GPU round trips bit-exact (state, step, lr), restored and original stay bit-equal; the CPU resumed from the GPU's state: ${cmp.summary()}`);
  } finally {
    for (const o of optimizers) o.destroy();
    for (const x of owned) x.destroy();
  }
}

async function groupsCase(device: GPUDevice, c: GroupsCase): Promise<Outcome> {
  // Two tensors in one parameter buffer and one gradient buffer, at aligned offsets with SENTINEL between.
  const tensors = [
    { name: 'a', size: 77, paramAt: 0, gradAt: 256 },
    { name: 'b', size: 130, paramAt: 512, gradAt: 768 },
  ] as const;
  const steps = 4;
  const data = tensors.map((t) => makeData(`${c.name}/${t.name}`, t.size, steps));
  const paramAll = new Float32Array(1280 / 4).fill(SENTINEL), gradAll = new Float32Array(1536 / 4).fill(SENTINEL);
  tensors.forEach((t, i) => paramAll.set(data[i]!.p0, t.paramAt / 4));
  const params = bufferWith(device, 'checks.groups.params', paramAll), grads = bufferWith(device, 'checks.groups.grads', gradAll);
  const base: Partial<RMSPropOptions> = { lr: 0.005, weightDecay: 0.01 };
  const second: Partial<RMSPropOptions> = { momentum: 0.9, lrInMomentum: true, epsMode: 'inside', eps: 1e-3 };
  const spec = (i: 0 | 1) => {
    const t = tensors[i];
    return { name: t.name, param: { buffer: params, offset: t.paramAt, size: t.size * 4 }, grad: { buffer: grads, offset: t.gradAt, size: t.size * 4 } };
  };
  const optimizer = new RMSProp(device, [{ params: [spec(0)] }, { params: [spec(1)], ...second }], base);
  const refParams = data.map((d) => d.p0.slice()), refGrads = tensors.map((t) => new Float32Array(t.size));
  const reference = new CheckedReference(
    [{ params: [{ name: 'a', param: refParams[0]!, grad: refGrads[0]! }] }, { params: [{ name: 'b', param: refParams[1]!, grad: refGrads[1]! }], ...second }],
    base,
    { multiplyAdd, reducePartials },
  );
  const problems: string[] = [];
  try {
    for (let s = 0; s < steps; s++) {
      tensors.forEach((t, i) => {
        device.queue.writeBuffer(grads, t.gradAt, data[i]!.grads[s]!);
        refGrads[i]!.set(data[i]!.grads[s]!);
      });
      optimizer.step();
      reference.step();
    }
    const got = await optimizer.readParams(), saved = await optimizer.stateDict();
    const [refSaved, bounds] = await Promise.all([reference.stateDict(), reference.bounds()]);
    const cmp = new Comparison();
    tensors.forEach((t, i) => cmp.addTensor(t.name, got[i]!, refParams[i]!, saved.tensors[i]!, refSaved.tensors[i]!,
      bounds ? { param: bounds.params[i], ...bounds.state[i] } : undefined, problems));
    if (saved.tensors[0]?.momentumBuffer !== undefined || saved.tensors[1]?.momentumBuffer === undefined) {
      problems.push('only the second group has momentum, so only tensor b should have a momentumBuffer');
    }
    problems.push(...guardDamage(await readBuffer(device, params), tensors.map((t) => ({ start: t.paramAt / 4, size: t.size }))).map((m) => `param buffer: ${m}`));
    return outcome(cmp, problems, `2 groups, ${steps} steps: ${cmp.summary()}`);
  } finally {
    optimizer.destroy();
    params.destroy();
    grads.destroy();
  }
}

function runCase(device: GPUDevice, c: CaseSpec): Promise<Outcome> {
  switch (c.kind) {
    case 'reference': return referenceCase(device, c);
    case 'encoder': return encoderCase(device, c);
    case 'lr': return lrCase(device, c);
    case 'stateDict': return stateDictCase(device, c);
    case 'groups': return groupsCase(device, c);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

// ---------------------------------------------------------------------------------------------
// The run.

async function run(): Promise<PageResults> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const fail = (fatal: string, extra: Partial<PageResults> = {}): PageResults => ({ done: true, cases: [], uncapturedErrors: [], ...extra, fatal, ms: elapsed() });
  if (!('gpu' in navigator) || !navigator.gpu) {
    return fail(`navigator.gpu is missing (isSecureContext: ${isSecureContext}): serve the page from localhost or https, and launch Chrome with --enable-unsafe-webgpu.`);
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return fail('navigator.gpu.requestAdapter() returned null: no WebGPU adapter (on Linux without a GPU, Chromium needs --enable-unsafe-webgpu for SwiftShader).');
  const info = adapter.info;
  const adapterReport: AdapterReport = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallbackAdapter: (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    features: [...adapter.features].sort(),
  };
  const device = await adapter.requestDevice({ label: 'checks' });
  multiplyAdd = await detectMultiplyAdd(device);
  reducePartials = reduceTargetPartials(device);
  const words = [info.vendor, info.architecture, info.device, info.description].join(' ');
  tolerance = toleranceFor(words, { forceBound: new URLSearchParams(location.search).get('tolerance') === 'bound' });
  console.log(`[checks] tolerance: ${tolerance.label} (${tolerance.why})`);
  console.log(`[checks] WGSL fma rounds ${multiplyAdd === 'fused' ? 'once (fused)' : 'twice (product, then sum)'}; the CPU reference rounds the same`);
  const uncapturedErrors: string[] = [];
  device.addEventListener('uncapturederror', (event) => {
    const message = `${event.error.constructor.name}: ${event.error.message}`;
    uncapturedErrors.push(message);
    console.error(`[checks] uncaptured GPU error: ${message}`);
  });
  let lost: string | undefined;
  void device.lost.then((l) => { if (l.reason !== 'destroyed') lost = `${l.reason}: ${l.message}`; });

  const cases: CaseResult[] = [];
  try {
    for (const c of CASES) {
      const t0 = performance.now();
      const before = uncapturedErrors.length;
      const { value, thrown, scopeErrors } = await withTimeout(inErrorScopes(device, () => runCase(device, c)), CASE_TIMEOUT_MS, c.name);
      const problems = [...(value?.problems ?? []), ...scopeErrors, ...uncapturedErrors.slice(before).map((e) => `uncaptured: ${e}`)];
      if (thrown !== undefined) problems.unshift(`threw ${describeError(thrown)}`);
      if (lost) problems.push(`device lost: ${lost}`);
      const maxUlps = value?.maxUlps ?? Infinity;
      const withinTolerance = value?.within ?? false;
      if (value && !withinTolerance) problems.unshift(`${maxUlps} ULPs from the reference: outside the tolerance (${tolerance.label})`);
      const ok = problems.length === 0;
      const result: CaseResult = {
        name: c.name,
        ok,
        maxUlps,
        tolerance: tolerance.label,
        withinTolerance,
        boundUsed: value?.boundUsed ?? 0,
        message: [...problems, value?.summary ?? ''].filter(Boolean).join('; '),
        ms: Math.round(performance.now() - t0),
      };
      cases.push(result);
      console.log(`[checks] ${ok ? 'ok  ' : 'FAIL'} ${c.name} (${result.ms} ms): ${result.message}`);
      if (lost) return fail(`the device was lost during '${c.name}': ${lost}`, { adapter: adapterReport, cases, uncapturedErrors });
    }
  } finally {
    device.destroy();
  }
  return { done: true, adapter: adapterReport, cases, uncapturedErrors, ms: elapsed() };
}

run().then(
  (results) => { window.__results = results; },
  (error: unknown) => {
    console.error('[checks] stopped:', error);
    window.__results = { done: true, cases: [], uncapturedErrors: [], fatal: `the page stopped: ${error instanceof Error ? error.stack ?? error.message : String(error)}`, ms: 0 };
  },
);
