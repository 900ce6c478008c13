/**
 * The browser half of `npm run bench`: headless Chromium (test/browser/chromium.ts) opens
 * bench/web/index.html from a Vite dev server on localhost (test/browser/vite-server.ts), which runs
 * the same workloads on navigator.gpu and leaves its figures in `window.__bench`.
 */
import type { BenchConfig, BenchReport } from './core.js';
import type { TfjsBenchConfig, TfjsBenchReport } from './tfjs.js';
import type { PageBench } from './web/main.js';
import { launchChromium } from '../test/browser/chromium.js';
import { startViteServer } from '../test/browser/vite-server.js';

/** The page's limit: a full run takes about two minutes on SwiftShader with two cores. */
const PAGE_TIMEOUT_MS = 10 * 60_000;

/**
 * Runs the benchmark page in headless Chromium and returns its report.
 *
 * @example
 * ```ts
 * console.log(formatReport(await benchBrowser(QUICK_CONFIG)));
 * ```
 */
export async function benchBrowser(config: BenchConfig): Promise<BenchReport> {
  return runPage(`config=${encodeURIComponent(JSON.stringify(config))}`) as Promise<BenchReport>;
}

/**
 * The --tfjs bench (bench/tfjs.ts) in headless Chromium, on the page's device.
 *
 * @example
 * ```ts
 * console.log(formatTfjsReport(await benchBrowserTfjs(TFJS_QUICK_CONFIG)));
 * ```
 */
export async function benchBrowserTfjs(config: TfjsBenchConfig): Promise<TfjsBenchReport> {
  return runPage(`tfjs=${encodeURIComponent(JSON.stringify(config))}`) as Promise<TfjsBenchReport>;
}

/** Opens the benchmark page with `query` and returns the report it leaves in `window.__bench`. */
async function runPage(query: string): Promise<BenchReport | TfjsBenchReport> {
  const [server, chromium] = await Promise.all([startViteServer(), launchChromium()]);
  try {
    console.log(`browser: ${await chromium.browser.version()} (${chromium.executablePath}); page server: ${server.origin}`);
    const page = await chromium.browser.newPage();
    page.on('console', (m) => {
      const line = m.text();
      if (!line.startsWith('[vite]')) console.log(`[page] ${line}`);
    });
    const failed = new Promise<never>((_, reject) => {
      page.once('pageerror', (e) => reject(new Error(`the benchmark page threw: ${e instanceof Error ? e.message : String(e)}`)));
      page.once('error', (e) => reject(new Error(`the benchmark page crashed: ${e.message}`))); // e.g. out of memory
    });
    // The page takes the whole config as JSON in its query.
    await page.goto(server.url(`/bench/web/index.html?${query}`), { waitUntil: 'load', timeout: 60_000 });
    const done = page
      .waitForFunction(() => window.__bench?.done === true, { timeout: PAGE_TIMEOUT_MS, polling: 500 })
      .then(() => page.evaluate(() => window.__bench!) as Promise<PageBench>);
    const result = await Promise.race([done, failed]);
    if ('error' in result) throw new Error(`the benchmark page failed: ${result.error}`);
    return result.report;
  } finally {
    await chromium.close();
    await server.close();
  }
}
