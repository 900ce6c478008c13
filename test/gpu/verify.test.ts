/**
 * `npm run verify`'s check (demo/check/verify.ts) on this run's adapter: every variant passes at the
 * adapter's tolerance, and the Markdown report names the adapter, the tolerance and every variant.
 * (The bandwidth part runs in `npm run verify` itself and in the "Check this GPU" browser test.)
 */
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requestNodeAdapter } from '../../demo/node/dawn.js';
import {
  BLOCKWISE8_VARIANTS, formatReport, HALF_VARIANTS, requestCheckDevice, verifyDevice,
} from '../../demo/check/verify.js';
import { EXTENSIONS, VARIANTS } from '../../demo/check/variants.js';
import { withErrorScopes } from './harness.js';

let adapter: GPUAdapter;
let device: GPUDevice;

beforeAll(async () => {
  const found = await requestNodeAdapter();
  if (!found) throw new Error('no WebGPU adapter');
  adapter = found.adapter;
  device = await requestCheckDevice(adapter, 'test/gpu/verify');
});

afterAll(() => device?.destroy());

describe('npm run verify', () => {
  test('every variant passes on this adapter, and the report says so', async () => {
    const forceBound = process.env.GPU_TOLERANCE === 'bound';
    const options = { environment: 'vitest', now: () => performance.now(), bandwidth: false, forceBound };
    const report = await withErrorScopes(device, () => verifyDevice(device, adapter, options));
    const failures = report.rows.filter((r) => !r.pass).map((r) => `${r.variant}: ${r.failure}`);
    expect(failures).toEqual([]);
    expect(report.errors).toEqual([]);
    expect(report.pass).toBe(true);
    expect(report.rows.map((r) => r.variant)).toEqual(
      [...VARIANTS, ...EXTENSIONS, ...HALF_VARIANTS, ...BLOCKWISE8_VARIANTS].map((v) => v.name),
    );
    expect(report.rows.length).toBe(90);
    expect(report.rows.every((r) => r.elements > 0)).toBe(true);
    if (report.tolerance.kind === 'exact') expect(report.rows.every((r) => r.worstUlps === 0)).toBe(true);
    const text = formatReport(report);
    expect(text).toMatch(/^## webgpu-rmsprop GPU check: PASS/);
    expect(text).toContain(report.adapterWords);
    expect(text).toContain(`tolerance: ${report.tolerance.label}`);
    for (const r of report.rows) expect(text).toContain(`| ${r.variant} |`);
  }, 120_000);
});
