/**
 * The benchmark page: the same workloads as the Node run (bench/core.ts), on navigator.gpu, with
 * TF.js's WebGPU backend on the page's own device. Sets `window.__bench` when done.
 */
import { FULL_CONFIG, QUICK_CONFIG, runBench, type BenchConfig, type BenchReport } from '../core';
import { formatReport } from '../table';
import { formatTfjsReport, runTfjsBench, TFJS_FULL_CONFIG, type TfjsBenchConfig, type TfjsBenchReport } from '../tfjs';

/** What the page leaves for bench/browser.ts. */
export type PageBench = { done: true; report: BenchReport | TfjsBenchReport } | { done: true; error: string };

declare global {
  interface Window {
    __bench?: PageBench;
  }
}

type TfjsBundle = typeof import('./tfjs-entry');

/** Built by `vite build --config vite.bench.config.ts --mode web` (npm run bench does it first). */
const TFJS_BUNDLE = '/dist-bench/web/tfjs.js';

/** `?config=<JSON of a BenchConfig>` (what bench/browser.ts passes), else `?quick` or the full run. */
function config(): BenchConfig {
  const query = new URLSearchParams(location.search);
  const json = query.get('config');
  if (json) return { ...FULL_CONFIG, ...(JSON.parse(json) as Partial<BenchConfig>) };
  return query.has('quick') ? QUICK_CONFIG : FULL_CONFIG;
}

/** `?tfjs=<JSON of a TfjsBenchConfig>`: the --tfjs bench instead (bench/tfjs.ts). */
function tfjsConfig(): TfjsBenchConfig | undefined {
  const json = new URLSearchParams(location.search).get('tfjs');
  return json === null ? undefined : { ...TFJS_FULL_CONFIG, ...(JSON.parse(json) as Partial<TfjsBenchConfig>) };
}

/** Set just before the page destroys its device, so that the loss it causes is not reported as one. */
let destroying = false;

async function run(): Promise<BenchReport | TfjsBenchReport> {
  if (!navigator.gpu) throw new Error('navigator.gpu is missing: WebGPU is off in this browser (Chromium on Linux needs --enable-unsafe-webgpu).');
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('requestAdapter() returned null: no WebGPU adapter.');
  const { maxStorageBufferBindingSize, maxBufferSize } = adapter.limits;
  const timestamps = adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({
    label: 'webgpu-rmsprop bench (page)',
    requiredLimits: { maxStorageBufferBindingSize, maxBufferSize },
    requiredFeatures: timestamps ? ['timestamp-query'] : [],
  });
  device.addEventListener('uncapturederror', (e) => console.error(`uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`));
  // A lost device ends the page with its reason, where it would otherwise leave the runner waiting for a report.
  void device.lost.then((info) => {
    if (info.reason === 'destroyed' && destroying) return; // the page's own device.destroy() at the end
    console.error(`the WebGPU device was lost (${info.reason}): ${info.message}`);
    window.__bench ??= { done: true, error: `the WebGPU device was lost (${info.reason}): ${info.message}` };
  });
  const { vendor, architecture, device: name, description } = adapter.info;
  const words = [vendor, architecture, name, description].filter(Boolean).join(' ').trim() || 'unknown adapter';
  const { tf, tfl, WebGPUBackend } = (await import(/* @vite-ignore */ TFJS_BUNDLE)) as TfjsBundle;
  // Replace the backend TF.js registered on import (on a device of its own), if it did.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device));
  if (!(await tf.setBackend('webgpu'))) throw new Error('TF.js could not start its WebGPU backend on the page\'s device.');
  const chrome = navigator.userAgent.match(/(?:HeadlessChrome|Chrome|Chromium)\/([\d.]+)/);
  try {
    const tfjs = tfjsConfig();
    if (tfjs) {
      return await runTfjsBench({
        name: chrome ? `Chromium ${chrome[1]}` : 'browser', adapter: words, device, tf, tfl, now: () => performance.now(), log: (line) => console.log(line),
      }, tfjs);
    }
    return await runBench({
      name: chrome ? `Chromium ${chrome[1]}` : 'browser',
      device,
      adapter: words,
      isSoftware: /swiftshader/i.test(words) || (adapter.info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true,
      tfjs: { tf, WebGPUBackend },
      now: () => performance.now(),
      log: (line) => console.log(line),
    }, config());
  } finally {
    tf.removeBackend('webgpu');
    destroying = true;
    device.destroy();
  }
}

run().then(
  (report) => {
    document.getElementById('out')!.textContent = 'models' in report ? formatTfjsReport(report) : formatReport(report);
    window.__bench = { done: true, report };
  },
  (error: unknown) => {
    console.error(error);
    window.__bench = { done: true, error: error instanceof Error ? error.stack ?? error.message : String(error) };
  },
);
