/**
 * The demo's "Check this GPU" page (demo/web/check.html), opened in each browser of ./browsers.ts
 * (headless Chromium on its own SwiftShader, headless Firefox on lavapipe or SwiftShader where there is
 * no GPU) from the demo's Vite dev server: it runs every variant against the CPU reference, fills its
 * table, and every row passes at the adapter's tolerance (0 ULPs on SwiftShader in Chromium; the WGSL
 * bound where the adapter is not known, as in Firefox, whose adapter info is empty). A screenshot per
 * browser goes to test-artifacts/check-this-gpu-ENGINE.png.
 */
import { mkdirSync } from 'node:fs';
import type { Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VerifyReport } from '../../demo/check/verify';
import { EXTENSIONS, VARIANTS } from '../../demo/check/variants';
import { BLOCKWISE8_VARIANTS, HALF_VARIANTS } from '../../demo/check/verify';
import { browserEngines, ENGINE_NAMES, launchBrowser, type Engine, type LaunchedBrowser } from './browsers';
import { REPO_ROOT, startViteServer, type TestServer } from './vite-server';

const ARTIFACTS = `${REPO_ROOT}test-artifacts`;
/**
 * Every variant and the bandwidth: about 20 s in Chromium on SwiftShader, about 2 minutes in Firefox (each
 * step's readback is slow there: 1.1 s a variant, 2.1 s an 8-bit one, which reads its state every step),
 * measured on a shared two-core machine.
 */
const CHECK_TIMEOUT_MS = 240_000;

/** The check page in one browser. */
function suiteIn(engine: Engine): void {
  describe(`"Check this GPU" in headless ${ENGINE_NAMES[engine]}`, () => {
  let browser: LaunchedBrowser | undefined;
  let server: TestServer | undefined;
  let page: Page | undefined;
  const pageErrors: string[] = [];
  let report: VerifyReport | undefined;
  let rows: { cells: string[]; className: string }[] = [];

  beforeAll(async () => {
    const started = await Promise.allSettled([
      launchBrowser(engine).then((c) => (browser = c)),
      startViteServer({ configFile: 'vite.demo.config.ts', root: 'demo/web' }).then((s) => (server = s)),
    ]);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    mkdirSync(ARTIFACTS, { recursive: true });
    console.log(`browser: ${browser!.description}`);
    page = await browser!.browser.newPage();
    await page.setViewport({ width: 1200, height: 1400 });
    page.on('pageerror', (error) => pageErrors.push(error instanceof Error ? error.stack ?? error.message : String(error)));
    page.on('console', (m) => {
      if (m.text().startsWith('[check] ') && !/^\[check\] pass /.test(m.text())) console.log(m.text());
    });
    await page.goto(server!.url('/check.html'), { waitUntil: 'load', timeout: 30_000 });
    await page.waitForFunction(() => window.__check?.done === true, { timeout: CHECK_TIMEOUT_MS, polling: 250 });
    const result = await page.evaluate(() => window.__check!);
    if (result.error) throw new Error(`the check page could not run: ${result.error}`);
    report = result.report;
    rows = await page.$$eval('#results tbody tr', (trs) => trs.map((tr) => ({
      cells: Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? ''),
      className: tr.className,
    })));
    await page.screenshot({ path: `${ARTIFACTS}/check-this-gpu-${engine}.png`, fullPage: true });
  }, CHECK_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await page?.close();
    await Promise.allSettled([browser?.close(), server?.close()]);
  });

  describe('the page', () => {
    it('shows one row per variant, every one passing at the adapter\'s tolerance, and the verdict', async () => {
      expect(pageErrors, 'uncaught errors in the page').toEqual([]);
      const expected = [...VARIANTS, ...EXTENSIONS, ...HALF_VARIANTS, ...BLOCKWISE8_VARIANTS].map((v) => v.name);
      expect(expected.length).toBe(90); // 68 of the base rule and TF1, 13 extensions, 4 16-bit, 5 8-bit state
      expect(rows.map((r) => r.cells[0])).toEqual(expected);
      for (const r of rows) {
        expect(r.className, `${r.cells[0]}: ${r.cells[4]}`).toBe('pass');
        expect(r.cells[4]).toBe('pass');
      }
      expect(report!.pass, report!.errors.join('; ')).toBe(true);
      expect(report!.errors).toEqual([]);
      // Chromium without a GPU runs WebGPU on SwiftShader: bit for bit there, measured.
      console.log(`check page: ${report!.adapterWords}; tolerance ${report!.tolerance.label}; ${rows.length} rows`);
      if (/swiftshader/i.test(report!.adapterWords)) {
        expect(report!.tolerance.kind).toBe('exact');
        expect(report!.rows.every((r) => r.worstUlps === 0)).toBe(true);
      }
      const status = await page!.$eval('#status', (e) => e.textContent ?? '');
      expect(status).toMatch(new RegExp(`^PASS: ${expected.length} of ${expected.length} variants within the tolerance`));
    });

    it('lists the adapter, the features and the limits granted, and the step\'s GB/s beside a device copy', async () => {
      const facts = await page!.$$eval('#facts dt', (dts) => dts.map((dt) => [
        dt.textContent ?? '', dt.nextElementSibling?.textContent ?? '',
      ]));
      const fact = Object.fromEntries(facts);
      expect(Object.keys(fact)).toEqual(['adapter', 'WGSL fma', 'tolerance', 'features', 'limits granted', 'bandwidth', 'errors']);
      const fallback = report!.adapter.isFallbackAdapter ? ' (fallback adapter, a CPU implementation)' : '';
      expect(fact.adapter).toBe(report!.adapterWords + fallback);
      expect(fact['limits granted']).toMatch(/maxStorageBufferBindingSize \d+/);
      const b = report!.bandwidth!;
      expect(b.stepGBs).toBeGreaterThan(0);
      expect(b.copyGBs).toBeGreaterThan(0);
      // Sized from the limits: what one binding holds, at most 16Mi elements.
      expect(b.elements).toBeLessThanOrEqual(Math.min(16 * 2 ** 20, report!.limits.maxStorageBufferBindingSize! / 4));
      expect(fact.bandwidth).toMatch(/GB\/s; copyBufferToBuffer .* GB\/s/);
      expect(fact.errors).toBe('none');
    });
  });
  });
}

for (const engine of browserEngines()) suiteIn(engine);
