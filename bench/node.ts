/**
 * `npm run bench`: RMSProp's step against TF.js's and the CPU reference's, in Node on Dawn, then
 * in headless Chromium on navigator.gpu. Flags: --node-only, --browser-only, --quick (a short
 * smoke run), --large (add one tensor of 64Mi elements, for real GPUs), --only LIST (some of
 * single, transformer, large), --step-cost-only (bench/step-cost.ts alone), --json FILE (also write
 * the figures as JSON), --tfjs (instead: a whole tfjs-layers training step with tf.train.rmsprop,
 * tfjsRMSProp and a no-op optimizer; bench/tfjs.ts; --rounds N sets its rounds).
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients'; // autodiff, for the --tfjs training step
import * as tfl from '@tensorflow/tfjs-layers';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { adapterLine, nodeGpuInstance, requestNodeAdapter } from '../demo/node/dawn.js';
import { FULL_CONFIG, QUICK_CONFIG, runBench, type BenchConfig, type BenchEnvironment, type BenchReport, type WorkloadName } from './core.js';
import { STEP_COST_CONFIG, STEP_COST_QUICK, formatStepCost, runStepCost, type StepCostConfig, type StepCostReport } from './step-cost.js';

const WORKLOADS: readonly WorkloadName[] = ['single', 'transformer', 'large'];
import { formatReport, rows } from './table.js';
import { formatTfjsReport, runTfjsBench, TFJS_FULL_CONFIG, TFJS_QUICK_CONFIG, type TfjsBenchConfig, type TfjsBenchReport } from './tfjs.js';

interface Flags {
  node: boolean;
  browser: boolean;
  quick: boolean;
  large: boolean;
  only?: WorkloadName[];
  json?: string;
  /** Only bench/step-cost.ts (Node). */
  stepCostOnly: boolean;
  tfjs: boolean;
  /** --rounds N: the --tfjs bench's timed rounds (more rounds, a tighter figure on a busy machine). */
  rounds?: number;
}

function parseFlags(argv: readonly string[]): Flags {
  const flags: Flags = { node: true, browser: true, quick: false, large: false, stepCostOnly: false, tfjs: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--node-only') flags.browser = false;
    else if (a === '--browser-only') flags.node = false;
    else if (a === '--quick') flags.quick = true;
    else if (a === '--large') flags.large = true;
    else if (a === '--step-cost-only') { flags.stepCostOnly = true; flags.browser = false; }
    else if (a === '--tfjs') flags.tfjs = true;
    else if (a === '--rounds') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 2) throw new RangeError(`--rounds takes an integer >= 2, got '${argv[i]}'.`);
      flags.rounds = n;
    }
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = (a === '--only' ? argv[++i] : a.slice('--only='.length)) ?? '';
      const names = list.split(',').filter(Boolean);
      const bad = names.filter((n) => !WORKLOADS.includes(n as WorkloadName));
      if (names.length === 0 || bad.length > 0) throw new RangeError(`--only takes a comma-separated list of ${WORKLOADS.join(', ')}; got '${list}'.`);
      flags.only = names as WorkloadName[];
    }
    else if (a === '--json') flags.json = argv[++i];
    else if (a.startsWith('--json=')) flags.json = a.slice('--json='.length);
    else throw new RangeError(`unknown flag '${a}': use --node-only, --browser-only, --quick, --large, --only single,transformer,large, --step-cost-only, --json FILE, --tfjs, --rounds N.`);
  }
  if (!flags.node && !flags.browser) throw new RangeError('--node-only and --browser-only together leave nothing to run.');
  if (flags.json === undefined && argv.includes('--json')) throw new RangeError('--json needs a file name.');
  return flags;
}

/** A Dawn device (the adapter's own buffer limits, timestamps where it has them) with TF.js's WebGPU backend on it. */
async function nodeDeviceWithTfjs(): Promise<{ device: GPUDevice; found: NonNullable<Awaited<ReturnType<typeof requestNodeAdapter>>> }> {
  const found = await requestNodeAdapter();
  if (!found) throw new Error('No WebGPU adapter in Node: Dawn found no Vulkan driver (see demo/node/dawn.ts, WEBGPU_ADAPTER).');
  console.log(adapterLine(found));
  const { adapter } = found;
  const { maxStorageBufferBindingSize, maxBufferSize } = adapter.limits;
  const timestamps = adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({
    label: 'webgpu-rmsprop bench (node)',
    requiredLimits: { maxStorageBufferBindingSize, maxBufferSize },
    requiredFeatures: timestamps ? ['timestamp-query'] : [],
  });
  device.addEventListener('uncapturederror', (e) => console.error(`uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`));
  void device.lost.then((info) => { if (info.reason !== 'destroyed') console.error(`device lost: ${info.message}`); });
  // TF.js's WebGPU backend looks for navigator.gpu (Node 20 has no navigator), then runs on our device.
  const g = globalThis as { navigator?: { gpu?: GPU } };
  g.navigator ??= {} as { gpu?: GPU };
  g.navigator.gpu ??= nodeGpuInstance();
  tf.env().set('IS_TEST', true); // no "use tfjs-node" banner
  // Replace the backend TF.js registered on import (on a device of its own), if it did.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device));
  if (!(await tf.setBackend('webgpu'))) throw new Error('TF.js could not start its WebGPU backend on the Dawn device.');
  return { device, found };
}

/**
 * Our optimizer, TF.js and the CPU reference on one Dawn device in this process; then what a step
 * costs on that device (bench/step-cost.ts).
 */
async function benchNode(
  config: BenchConfig,
  stepCost: StepCostConfig,
  stepCostOnly: boolean,
): Promise<{ report?: BenchReport; stepCost: StepCostReport }> {
  const { device, found } = await nodeDeviceWithTfjs();
  try {
    const env: BenchEnvironment = {
      name: 'Node (Dawn)',
      device,
      adapter: found.description,
      isSoftware: found.isSoftware,
      tfjs: { tf, WebGPUBackend },
      now: () => performance.now(),
      log: (line) => console.log(line),
    };
    const report = stepCostOnly ? undefined : await runBench(env, config);
    return { ...(report ? { report } : {}), stepCost: await runStepCost(env, stepCost) };
  } finally {
    tf.removeBackend('webgpu');
    device.destroy();
  }
}

/** The --tfjs bench: a whole tfjs-layers training step with each optimizer, on one Dawn device. */
function tfjsConfig(flags: Flags): TfjsBenchConfig {
  return { ...(flags.quick ? TFJS_QUICK_CONFIG : TFJS_FULL_CONFIG), ...(flags.rounds ? { rounds: flags.rounds } : {}) };
}

async function benchNodeTfjs(config: TfjsBenchConfig): Promise<TfjsBenchReport> {
  const { device, found } = await nodeDeviceWithTfjs();
  try {
    return await runTfjsBench({
      name: 'Node (Dawn)', adapter: found.description, device, tf, tfl, now: () => performance.now(),
      cpuNow: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; },
      log: (line) => console.log(line),
    }, config);
  } finally {
    tf.removeBackend('webgpu');
    device.destroy();
  }
}

async function mainTfjs(flags: Flags): Promise<void> {
  const reports: TfjsBenchReport[] = [];
  if (flags.node) {
    reports.push(await benchNodeTfjs(tfjsConfig(flags)));
    console.log(`\n${formatTfjsReport(reports.at(-1)!)}\n`);
  }
  if (flags.browser) {
    const { benchBrowserTfjs } = await import('./browser.js');
    reports.push(await benchBrowserTfjs(tfjsConfig(flags)));
    console.log(`\n${formatTfjsReport(reports.at(-1)!)}\n`);
  }
  if (reports.length > 1) console.log(`\n${reports.map(formatTfjsReport).join('\n\n')}`);
  if (flags.json) {
    writeFileSync(flags.json, JSON.stringify({ tfjs: reports }, null, 2));
    console.log(`figures written to ${flags.json}`);
  }
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.tfjs) return mainTfjs(flags);
  const config: BenchConfig = {
    ...(flags.quick ? QUICK_CONFIG : FULL_CONFIG),
    ...(flags.large || flags.only?.includes('large') ? { largeSize: 64 * 1024 * 1024 } : {}),
    ...(flags.only ? { only: flags.only } : {}),
  };
  const reports: BenchReport[] = [];
  const tables: string[] = [];
  let stepCost: StepCostReport | undefined;
  if (flags.node) {
    const node = await benchNode(config, flags.quick ? STEP_COST_QUICK : STEP_COST_CONFIG, flags.stepCostOnly);
    if (node.report) reports.push(node.report);
    stepCost = node.stepCost;
    const printed = [...(node.report ? [formatReport(node.report)] : []), formatStepCost(node.stepCost)];
    tables.push(...printed);
    console.log(`\n${printed.join('\n\n')}\n`);
  }
  if (flags.browser) {
    const { benchBrowser } = await import('./browser.js'); // puppeteer and vite: only here
    const report = await benchBrowser(config);
    reports.push(report);
    tables.push(formatReport(report));
    console.log(`\n${tables[tables.length - 1]}\n`);
  }
  if (reports.length > 1) console.log(`\n${tables.join('\n\n')}`);
  if (flags.json) {
    writeFileSync(flags.json, JSON.stringify({ reports, rows: reports.map((r) => ({ environment: r.environment, rows: rows(r) })), stepCost }, null, 2));
    console.log(`figures written to ${flags.json}`);
  }
}

main().then(
  () => process.exit(0), // Dawn keeps the event loop alive
  (error: unknown) => {
    console.error(error instanceof Error ? error.stack ?? error.message : error);
    process.exit(1);
  },
);
