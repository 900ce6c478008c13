/**
 * The demo's "Check this GPU" page (check.html): demo/check/verify.ts on navigator.gpu, shown as it
 * goes, then a verdict, the facts of the adapter and a report to copy into an issue.
 * `window.__check` holds the finished report (the browser test reads it).
 */
import { formatReport, requestCheckDevice, verifyDevice, type VerifyReport, type VerifyRow } from '../check/verify';

declare global {
  interface Window {
    __check?: { done: boolean; report?: VerifyReport; error?: string };
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const tbody = () => $<HTMLTableElement>('results').tBodies[0]!;

function fact(term: string, value: string): void {
  const dt = document.createElement('dt'), dd = document.createElement('dd');
  dt.textContent = term;
  dd.textContent = value;
  $('facts').append(dt, dd);
}

function addRow(row: VerifyRow, tolerance: string): void {
  const tr = document.createElement('tr');
  tr.className = row.pass ? 'pass' : 'fail';
  const used = Number.isNaN(row.boundUsed) ? '–' : `${(100 * row.boundUsed).toFixed(1)}%`;
  const ulps = Number.isNaN(row.worstUlps) ? '–' : String(row.worstUlps);
  for (const text of [row.variant, ulps, used, tolerance, row.pass ? 'pass' : `FAIL: ${row.failure ?? ''}`]) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  tbody().append(tr);
}

async function run(): Promise<void> {
  window.__check = { done: false };
  tbody().replaceChildren();
  $('facts').replaceChildren();
  $('error').hidden = true;
  ($('rerun') as HTMLButtonElement).disabled = true;
  ($('copy') as HTMLButtonElement).disabled = true;
  const status = $('status');
  if (!navigator.gpu) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing): use Chrome or Edge 113+, Firefox 141+ ' +
      'or Safari 26, from https or localhost.');
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU found no adapter: no GPU it may use, or a blocklisted driver.');
  const device = await requestCheckDevice(adapter, 'check this GPU');
  try {
    const report = await verifyDevice(device, adapter, {
      environment: navigator.userAgent,
      now: () => performance.now(),
      log: (line) => {
        console.log(`[check] ${line}`);
        status.textContent = `Checking… ${line}`;
      },
    });
    report.rows.forEach((r) => addRow(r, report.tolerance.label));
    const b = report.bandwidth;
    const fallback = report.adapter.isFallbackAdapter ? ' (fallback adapter, a CPU implementation)' : '';
    fact('adapter', report.adapterWords + fallback);
    fact('WGSL fma', report.multiplyAdd === 'fused' ? 'fused: one rounding' : 'separate: two roundings');
    fact('tolerance', `${report.tolerance.label}: ${report.tolerance.why}`);
    fact('features', report.features.join(', ') || 'none');
    fact('limits granted', Object.entries(report.limits).map(([k, v]) => `${k} ${v}`).join(', '));
    if (b) {
      fact('bandwidth', `${b.elements} elements (${b.timing}): ` +
        `step ${b.stepMs.toFixed(2)} ms = ${b.stepGBs.toFixed(1)} GB/s; ` +
        `copyBufferToBuffer ${b.copyMs.toFixed(2)} ms = ${b.copyGBs.toFixed(1)} GB/s ` +
        `(the step at ${(100 * b.stepGBs / b.copyGBs).toFixed(0)}% of the copy)`);
    }
    fact('errors', report.errors.length ? report.errors.join('; ') : 'none');
    const passed = report.rows.filter((r) => r.pass).length;
    status.textContent = `${report.pass ? 'PASS' : 'FAIL'}: ${passed} of ${report.rows.length} variants within the ` +
      `tolerance (${report.tolerance.label}) in ${(report.ms / 1000).toFixed(1)} s.`;
    status.className = `adapter verdict ${report.pass ? 'pass' : 'fail'}`;
    const markdown = formatReport(report);
    const copy = $('copy') as HTMLButtonElement;
    copy.disabled = false;
    copy.onclick = () => { void navigator.clipboard?.writeText(markdown).then(() => { copy.textContent = 'Copied'; }); };
    $('report-title').textContent = `GPU check: ${report.pass ? 'PASS' : 'FAIL'} on ${report.adapterWords}`;
    window.__check = { done: true, report };
  } finally {
    device.destroy();
    ($('rerun') as HTMLButtonElement).disabled = false;
  }
}

function start(): void {
  run().catch((error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    $('error').textContent = message;
    $('error').hidden = false;
    $('status').textContent = 'The check could not run.';
    ($('rerun') as HTMLButtonElement).disabled = false;
    window.__check = { done: true, error: message };
  });
}

$('rerun').addEventListener('click', start);
start();
