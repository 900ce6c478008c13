/**
 * "Check this GPU": every variant of the rule on the adapter at hand against the CPU reference
 * (`CheckedReference`: ReferenceRMSProp rounding as the adapter's fma does, with the WGSL bound),
 * at the adapter's tolerance, and the step's memory bandwidth beside a device copy. The same code
 * runs in Node (`npm run verify`, demo/node/verify.ts) and in the demo page (demo/web/check.ts);
 * both print the report as a table a user can paste into an issue.
 *
 * 8-bit state (BLOCKWISE8_VARIANTS) is compared after every step, parameters, codes and absmax:
 * bit for bit on an exact adapter; elsewhere parameters and absmax within the WGSL bound, and a code
 * equal to the twin's or its neighbour only where the twin's v / absmax lies within its bound of the
 * midpoint between them (demo/check/compare.ts `compareCodes`, docs/tolerance.md). Then the twin
 * takes the GPU's parameters and state, so that each step is judged from a state both hold.
 */
import {
  detectMultiplyAdd, encodeHalves, presets, reduceTargetPartials, RMSProp, type MultiplyAdd, type RMSPropOptions,
} from '../../src/index.js';
import { mulberry32 } from '../problems/random.js';
import { CheckedReference, compareAll } from './checked-reference.js';
import { adapterWords, toleranceFor, WorstSoFar, type Tolerance } from './compare.js';
import { MIN_8BIT_SIZE } from '../../src/rule/blockwise8.js';
import { EXTENSIONS, VARIANT_SIZES, VARIANT_STEPS, VARIANTS, type Variant } from './variants.js';

/** The 16-bit variants: gradients and parameters in f16 / bf16, with and without the master copy. */
export const HALF_VARIANTS: readonly Variant[] = [
  { name: 'f16 gradients, centered, momentum', options: { gradDtype: 'f16', centered: true, momentum: 0.9 } },
  {
    name: 'bf16 gradients, loss scale 8, clipGradNorm 1',
    options: { gradDtype: 'bf16', lossScale: 8, clipGradNorm: 1 },
  },
  {
    name: 'f16 parameters with a master copy, momentum',
    options: { paramDtype: 'f16', masterWeights: true, momentum: 0.9 },
  },
  {
    name: 'bf16 parameters and gradients, no master copy',
    options: { paramDtype: 'bf16', gradDtype: 'bf16', masterWeights: false },
  },
];

/**
 * The 8-bit state variants (stateDtype 'int8-blockwise', docs/blockwise8.md): tensors of 4096
 * elements or more keep uint8 codes and an absmax per 256; each variant runs VARIANT_STEPS steps, so
 * every step requantizes a state the previous one quantized.
 */
export const BLOCKWISE8_VARIANTS: readonly Variant[] = [
  { name: '8-bit state, PyTorch defaults (8192 elements)', options: { stateDtype: 'int8-blockwise' }, sizes: [8192] },
  {
    name: '8-bit state, L2 weightDecay 0.01, maximize, eps inside, alpha 0.9',
    options: { stateDtype: 'int8-blockwise', weightDecay: 0.01, maximize: true, epsMode: 'inside', alpha: 0.9 },
    sizes: [8192],
  },
  {
    name: '8-bit state, decoupled weightDecay 0.1, biasCorrection',
    options: { stateDtype: 'int8-blockwise', weightDecay: 0.1, weightDecayMode: 'decoupled', biasCorrection: true },
    sizes: [8192],
  },
  {
    name: '8-bit state, clipGradNorm 1, skipNonFinite (a NaN at step 4, skipped)',
    options: { stateDtype: 'int8-blockwise', clipGradNorm: 1, skipNonFinite: true },
    sizes: [8192],
    nonFiniteStep: 4,
  },
  {
    name: '8-bit state, 4099 elements (a last block of 3) beside 1031 (f32 state), TF1 preset',
    options: { ...presets.tf1, stateDtype: 'int8-blockwise' },
    sizes: [4099, 1031],
  },
];

/** One variant's outcome. */
export interface VerifyRow {
  readonly variant: string;
  /** Elements compared, over every step (parameters) and the final state slots. */
  readonly elements: number;
  /** The largest GPU-vs-reference distance in ULPs, and where. */
  readonly worstUlps: number;
  readonly where: string;
  /** The largest fraction of the WGSL bound any element used (0 when all were equal). */
  readonly boundUsed: number;
  readonly pass: boolean;
  /** Why it failed, when it did. */
  readonly failure?: string;
}

/** The step's speed against a device copy, on one tensor sized from the device's limits. */
export interface Bandwidth {
  readonly elements: number;
  /** The plain step (20 bytes per element: read p, g, v, write p, v). */
  readonly stepMs: number;
  readonly stepGBs: number;
  /** copyBufferToBuffer of the parameters (8 bytes per element: read and write). */
  readonly copyMs: number;
  readonly copyGBs: number;
  /** Timed with GPU timestamps, or the wall clock. */
  readonly timing: 'timestamps' | 'wall clock';
}

/** What a check found. */
export interface VerifyReport {
  readonly adapter: {
    readonly vendor: string;
    readonly architecture: string;
    readonly device: string;
    readonly description: string;
    readonly isFallbackAdapter: boolean;
  };
  /** The adapter described in one string (what the tolerance is chosen from). */
  readonly adapterWords: string;
  readonly environment: string;
  readonly features: readonly string[];
  /** The limits the device was granted. */
  readonly limits: Readonly<Record<string, number>>;
  readonly multiplyAdd: MultiplyAdd;
  readonly tolerance: Tolerance;
  readonly rows: readonly VerifyRow[];
  readonly bandwidth?: Bandwidth;
  /** Validation, out-of-memory or internal errors, and uncaptured ones. */
  readonly errors: readonly string[];
  readonly pass: boolean;
  readonly ms: number;
}

/** The limits a report lists (those that decide how RMSProp binds and dispatches). */
export const REPORTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage', 'minStorageBufferOffsetAlignment',
  'maxComputeWorkgroupStorageSize',
] as const;

/** The device to check on: the adapter's own storage and buffer limits (a big tensor stays one binding where it can). */
export async function requestCheckDevice(adapter: GPUAdapter, label = 'webgpu-rmsprop check'): Promise<GPUDevice> {
  const { maxStorageBufferBindingSize, maxBufferSize } = adapter.limits;
  const timestamps = adapter.features.has('timestamp-query');
  return adapter.requestDevice({
    label,
    requiredLimits: { maxStorageBufferBindingSize, maxBufferSize },
    requiredFeatures: timestamps ? ['timestamp-query'] : [],
  });
}

const USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

/** Gradients spanning 1e-3 to 1e3 with random signs and about one in ten exactly 0 (as the GPU tests). */
function gradients(n: number, random: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 1; i < n; i++) {
    if (random() < 0.1) continue;
    const magnitude = 10 ** (random() * 6 - 3) * scale;
    out[i] = random() < 0.5 ? -magnitude : magnitude;
  }
  return out;
}

/** The bytes of `x` in a buffer of whole u32 words (16-bit values: an odd count padded). */
function bufferOf(device: GPUDevice, label: string, x: Float32Array | Uint16Array): GPUBuffer {
  const size = Math.ceil(x.byteLength / 4) * 4;
  const buffer = device.createBuffer({ label, size, usage: USAGE, mappedAtCreation: true });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  buffer.unmap();
  return buffer;
}

/** One variant: the variant tests' sizes and steps, the GPU against its twin after every step. */
async function checkVariant(
  device: GPUDevice,
  v: Variant,
  seed: number,
  tolerance: Tolerance,
  multiplyAdd: MultiplyAdd,
): Promise<VerifyRow> {
  const random = mulberry32(seed);
  const o: Partial<RMSPropOptions> = v.options;
  const paramDtype = o.paramDtype ?? 'f32', gradDtype = o.gradDtype ?? 'f32';
  const blockwise8 = o.stateDtype === 'int8-blockwise';
  const sizes = v.sizes ?? VARIANT_SIZES;
  if (blockwise8 && !sizes.some((n) => n >= MIN_8BIT_SIZE)) {
    throw new RangeError(`${v.name}: no tensor of ${MIN_8BIT_SIZE} elements or more keeps 8-bit state.`);
  }
  const tensors = sizes.map((n, i) => {
    const values = Float32Array.from({ length: n }, () => random() * 2 - 1);
    const cpuParam = paramDtype === 'f32' ? values : encodeHalves(values, paramDtype);
    const cpuGrad = gradDtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
    return {
      name: `t${i}`, n, cpuParam, cpuGrad,
      param: bufferOf(device, `check.param[${i}]`, cpuParam),
      grad: bufferOf(device, `check.grad[${i}]`, cpuGrad),
    };
  });
  const paramBytes = paramDtype === 'f32' ? 4 : 2, gradBytes = gradDtype === 'f32' ? 4 : 2;
  const gpu = new RMSProp(device, tensors.map((t) => ({
    name: t.name,
    param: { buffer: t.param, size: t.n * paramBytes },
    grad: { buffer: t.grad, size: t.n * gradBytes },
  })), o);
  const specs = tensors.map((t) => ({ name: t.name, param: t.cpuParam, grad: t.cpuGrad }));
  const twin = new CheckedReference(specs, o, { multiplyAdd, reducePartials: reduceTargetPartials(device) });
  const worst = new WorstSoFar();
  try {
    for (let s = 0; s < VARIANT_STEPS; s++) {
      for (const t of tensors) {
        const g = gradients(t.n, random, v.gradScale);
        if (s + 1 === v.nonFiniteStep && t === tensors[0]) g[t.n >> 1] = NaN;
        const bits = gradDtype === 'f32' ? g : encodeHalves(g, gradDtype);
        t.cpuGrad.set(bits);
        // Whole u32 words (an odd count of 16-bit values padded with a zero half-word).
        const words = new Uint8Array(Math.ceil(bits.byteLength / 4) * 4);
        words.set(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
        device.queue.writeBuffer(t.grad, 0, words);
      }
      gpu.step();
      twin.step();
      const last = s === VARIANT_STEPS - 1;
      if (!blockwise8) {
        const r = await twin.compareWith(gpu, tolerance, { state: last, allowNonFinite: false });
        for (const { what, result } of r.tensors) worst.add(result, `step ${s + 1}, ${what}`);
        continue;
      }
      // 8-bit state: parameters, codes and absmax after every step; then the next step from a state
      // both hold (CheckedReference bounds an 8-bit step from a shared state only).
      const [gpuParams, gpuState] = [await gpu.readParams(), await gpu.stateDict()];
      const [cpuParams, cpuState, bounds] = [await twin.readParams(), await twin.stateDict(), await twin.bounds()];
      const r = compareAll(gpuParams, cpuParams, gpuState, cpuState, bounds, tolerance, { allowNonFinite: false });
      for (const { what, result } of r.tensors) worst.add(result, `step ${s + 1}, ${what}`);
      tensors.forEach((t, i) => (t.cpuParam as Float32Array).set(gpuParams[i]!));
      twin.loadStateDict(gpuState);
    }
    if (v.nonFiniteStep !== undefined) {
      const [onGpu, onCpu] = [await gpu.skippedSteps(), await twin.skippedSteps()];
      if (onGpu !== 1 || onCpu !== 1) {
        worst.failures.push(`skipped steps: ${onGpu} on the GPU, ${onCpu} on the CPU, 1 meant`);
      }
    }
  } finally {
    gpu.destroy();
    for (const t of tensors) { t.param.destroy(); t.grad.destroy(); }
  }
  return {
    variant: v.name, elements: worst.elements, worstUlps: worst.worstUlps, where: worst.where,
    boundUsed: worst.boundUsed, pass: worst.failures.length === 0,
    ...(worst.failures.length ? { failure: worst.failures[0]! } : {}),
  };
}

/** Median time of `run` over a few batches of about 100 ms (GPU timestamps when the device has them). */
async function timeIt(
  device: GPUDevice,
  run: () => void,
  now: () => number,
): Promise<{ ms: number; timing: Bandwidth['timing'] }> {
  const timestamps = device.features.has('timestamp-query');
  const querySet = timestamps ? device.createQuerySet({ label: 'check.timer', type: 'timestamp', count: 2 }) : undefined;
  const buffer = (label: string, usage: number) =>
    (timestamps ? device.createBuffer({ label, size: 16, usage }) : undefined);
  const resolve = buffer('check.timer.resolve', 0x200 | 0x04); // QUERY_RESOLVE | COPY_SRC
  const read = buffer('check.timer.read', 0x01 | 0x08); // MAP_READ | COPY_DST
  const marker = (index: 0 | 1) => {
    const encoder = device.createCommandEncoder({ label: 'check.timer' });
    const timestampWrites = index === 0
      ? { querySet: querySet!, beginningOfPassWriteIndex: 0 }
      : { querySet: querySet!, endOfPassWriteIndex: 1 };
    encoder.beginComputePass({ label: 'check.timer', timestampWrites }).end();
    if (index === 1) {
      encoder.resolveQuerySet(querySet!, 0, 2, resolve!, 0);
      encoder.copyBufferToBuffer(resolve!, 0, read!, 0, 16);
    }
    device.queue.submit([encoder.finish()]);
  };
  const batch = async (k: number): Promise<number> => {
    const start = now();
    if (timestamps) marker(0);
    for (let i = 0; i < k; i++) run();
    if (timestamps) marker(1);
    await device.queue.onSubmittedWorkDone();
    const wall = now() - start;
    if (!timestamps) return wall / k;
    await read!.mapAsync(1);
    const [b, e] = new BigInt64Array(read!.getMappedRange().slice(0));
    read!.unmap();
    return Number(e! - b!) / 1e6 / k;
  };
  try {
    run();
    await device.queue.onSubmittedWorkDone();
    const first = await batch(1);
    const k = Math.max(1, Math.min(200, Math.round(100 / Math.max(first, 1e-3))));
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push(await batch(k));
    times.sort((a, b) => a - b);
    return { ms: times[2]!, timing: timestamps ? 'timestamps' : 'wall clock' };
  } finally {
    querySet?.destroy();
    resolve?.destroy();
    read?.destroy();
  }
}

/**
 * The plain step's bandwidth beside copyBufferToBuffer, on one tensor of up to 16Mi elements, as
 * many as the device's storage binding and buffer limits take whole (one dispatch, one binding).
 */
async function bandwidth(device: GPUDevice, now: () => number): Promise<Bandwidth> {
  const most = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) / 4);
  const elements = Math.min(16 * 1024 * 1024, Math.floor(most / 1024) * 1024);
  const p = device.createBuffer({ label: 'check.bandwidth.param', size: elements * 4, usage: USAGE });
  const g = device.createBuffer({ label: 'check.bandwidth.grad', size: elements * 4, usage: USAGE });
  const copy = device.createBuffer({ label: 'check.bandwidth.copy', size: elements * 4, usage: USAGE });
  const optimizer = new RMSProp(device, [{ param: p, grad: g, name: 'bandwidth' }], { lr: 1e-3 });
  try {
    const step = await timeIt(device, () => optimizer.step(), now);
    const copied = await timeIt(device, () => {
      const encoder = device.createCommandEncoder({ label: 'check.bandwidth.copy' });
      encoder.copyBufferToBuffer(p, 0, copy, 0, elements * 4);
      device.queue.submit([encoder.finish()]);
    }, now);
    return {
      elements,
      stepMs: step.ms, stepGBs: (20 * elements) / (step.ms * 1e6),
      copyMs: copied.ms, copyGBs: (8 * elements) / (copied.ms * 1e6),
      timing: step.timing,
    };
  } finally {
    optimizer.destroy();
    for (const b of [p, g, copy]) b.destroy();
  }
}

/** How `verifyDevice` runs. */
export interface VerifyOptions {
  /** Where it runs, for the report (a user agent, "Node, Dawn"). */
  readonly environment: string;
  /** A clock in milliseconds (performance.now). */
  readonly now: () => number;
  /** Gets one line per variant as it finishes. */
  readonly log?: (line: string) => void;
  /** Measure the step's bandwidth beside a copy (default true). */
  readonly bandwidth?: boolean;
  /** Compare at the WGSL bound even on an adapter measured exact (to exercise the bound; GPU_TOLERANCE=bound). */
  readonly forceBound?: boolean;
}

/**
 * Checks `device` (made with `requestCheckDevice`): every variant (base rule, TF1 preset, the
 * extensions, 16-bit gradients and parameters) against the CPU reference at the adapter's
 * tolerance, inside error scopes, then the bandwidth. `log` gets one line per variant.
 */
export async function verifyDevice(
  device: GPUDevice,
  adapter: GPUAdapter,
  { environment, now, log = () => {}, bandwidth: measure = true, forceBound = false }: VerifyOptions,
): Promise<VerifyReport> {
  const started = now();
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const words = adapterWords(info);
  const tolerance = toleranceFor(words, { forceBound });
  const multiplyAdd = await detectMultiplyAdd(device);
  const errors: string[] = [];
  const onError = (e: Event) => errors.push(`uncaptured: ${(e as GPUUncapturedErrorEvent).error.message}`);
  device.addEventListener('uncapturederror', onError);
  log(`adapter: ${words}; fma ${multiplyAdd}; tolerance ${tolerance.label} (${tolerance.why})`);
  const rows: VerifyRow[] = [];
  const all = [...VARIANTS, ...EXTENSIONS, ...HALF_VARIANTS, ...BLOCKWISE8_VARIANTS];
  let report: Bandwidth | undefined;
  try {
    for (const [i, v] of all.entries()) {
      device.pushErrorScope('internal');
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      let row: VerifyRow;
      try {
        row = await checkVariant(device, v, 1000 + i, tolerance, multiplyAdd);
      } catch (error) {
        const failure = `threw ${error instanceof Error ? error.message : String(error)}`;
        row = { variant: v.name, elements: 0, worstUlps: NaN, where: '', boundUsed: NaN, pass: false, failure };
      }
      for (const kind of ['validation', 'out-of-memory', 'internal']) {
        const e = await device.popErrorScope();
        if (e) {
          errors.push(`${v.name}: ${kind} error: ${e.message}`);
          row = { ...row, pass: false, failure: `${kind} error: ${e.message}` };
        }
      }
      rows.push(row);
      const used = tolerance.kind === 'bound' ? `, ${(100 * row.boundUsed).toFixed(1)}% of the bound` : '';
      const ulps = Number.isNaN(row.worstUlps) ? '-' : row.worstUlps;
      log(`${row.pass ? 'pass' : 'FAIL'}  ${v.name}: ${ulps} ULPs${used}${row.failure ? ` (${row.failure})` : ''}`);
    }
    if (measure) {
      device.pushErrorScope('validation');
      report = await bandwidth(device, now);
      const e = await device.popErrorScope();
      if (e) errors.push(`bandwidth: validation error: ${e.message}`);
      const b = report;
      log(`bandwidth on ${b.elements} elements: step ${b.stepMs.toFixed(2)} ms, ${b.stepGBs.toFixed(1)} GB/s; ` +
        `copyBufferToBuffer ${b.copyMs.toFixed(2)} ms, ${b.copyGBs.toFixed(1)} GB/s (${b.timing})`);
    }
  } finally {
    device.removeEventListener('uncapturederror', onError);
  }
  const limits = Object.fromEntries(REPORTED_LIMITS.map((k) => [k, device.limits[k]]));
  return {
    adapter: {
      vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description,
      isFallbackAdapter: info.isFallbackAdapter ?? false,
    },
    adapterWords: words, environment, features: [...device.features].sort(), limits, multiplyAdd, tolerance, rows,
    ...(report ? { bandwidth: report } : {}),
    errors, pass: errors.length === 0 && rows.every((r) => r.pass), ms: now() - started,
  };
}

/**
 * The report as Markdown: what to paste into an issue ("GPU check: <adapter>").
 *
 * @example
 * ```ts
 * const report = await verifyDevice(device, adapter, { environment: 'Node (Dawn)', now: () => performance.now() });
 * console.log(formatReport(report));
 * ```
 */
export function formatReport(r: VerifyReport): string {
  const passed = r.rows.filter((x) => x.pass).length;
  const used = (x: VerifyRow) => (Number.isNaN(x.boundUsed) ? '-' : `${(100 * x.boundUsed).toFixed(1)}%`);
  const lines = [
    `## webgpu-rmsprop GPU check: ${r.pass ? 'PASS' : 'FAIL'}`,
    '',
    `- adapter: ${r.adapterWords}${r.adapter.isFallbackAdapter ? ' (fallback adapter)' : ''}`,
    `- environment: ${r.environment}`,
    `- WGSL fma: ${r.multiplyAdd === 'fused' ? 'fused (one rounding)' : 'separate (two roundings)'}`,
    `- tolerance: ${r.tolerance.label}: ${r.tolerance.why}`,
    `- variants: ${passed} of ${r.rows.length} pass; errors: ${r.errors.length ? r.errors.join('; ') : 'none'}`,
    `- limits granted: ${Object.entries(r.limits).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `- features: ${r.features.join(', ') || 'none'}`,
  ];
  if (r.bandwidth) {
    const b = r.bandwidth;
    lines.push(`- bandwidth, ${b.elements} elements (${b.timing}): ` +
      `plain step ${b.stepMs.toFixed(2)} ms = ${b.stepGBs.toFixed(1)} GB/s; ` +
      `copyBufferToBuffer ${b.copyMs.toFixed(2)} ms = ${b.copyGBs.toFixed(1)} GB/s; ` +
      `the step at ${(100 * b.stepGBs / b.copyGBs).toFixed(0)}% of the copy`);
  }
  lines.push('', '| variant | worst ULPs | of the WGSL bound | result |', '| --- | --- | --- | --- |');
  for (const x of r.rows) {
    const result = x.pass ? 'pass' : `FAIL: ${x.failure ?? ''}`;
    lines.push(`| ${x.variant} | ${Number.isNaN(x.worstUlps) ? '-' : x.worstUlps} | ${used(x)} | ${result} |`);
  }
  return lines.join('\n');
}
