/**
 * The library on a browser's real WebGPU, in each browser of ./browsers.ts: headless Chromium (Dawn;
 * SwiftShader where there is no GPU) and headless Firefox (wgpu and its WGSL compiler naga; lavapipe or
 * SwiftShader where there is no GPU) load test/browser/page/ from a Vite dev server on 127.0.0.1; the
 * page runs every case of page/cases.ts against the CPU reference, at the adapter's tolerance, and
 * reports; each case is one test here.
 */
import type { ConsoleMessage, Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserEngines, ENGINE_NAMES, launchBrowser, type Engine, type LaunchedBrowser } from './browsers';
import { CASES, type CaseResult, type PageResults } from './page/cases';
import { startViteServer, type TestServer } from './vite-server';

/** How long the page may take to run every case (SwiftShader or lavapipe on two cores need about a tenth of it). */
const RESULTS_TIMEOUT_MS = 100_000;
// GPU_TOLERANCE=bound: compare with the WGSL bound even on SwiftShader, where 0 ULPs is measured (to exercise it).
const PAGE_PATH = `/test/browser/page/index.html${process.env.GPU_TOLERANCE === 'bound' ? '?tolerance=bound' : ''}`;

/** puppeteer types `pageerror` as `Error | unknown`: a page can throw anything. */
function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function forwardConsole(message: ConsoleMessage): void {
  const type = message.type();
  const line = `[page ${type}] ${message.text()}`;
  if (type === 'error' || type === 'warn') console.warn(line);
  else console.log(line);
}

/** Resolves with the page's results, or rejects on the first uncaught page error or on timeout. */
function waitForResults(page: Page): Promise<PageResults> {
  return new Promise<PageResults>((resolve, reject) => {
    const onError = (error: unknown) => reject(new Error(`the page threw before reporting: ${errorText(error)}`));
    page.once('pageerror', onError);
    page
      .waitForFunction(() => window.__results?.done === true, { timeout: RESULTS_TIMEOUT_MS, polling: 200 })
      .then(() => page.evaluate(() => window.__results!))
      .then(resolve, (error: Error) => {
        const timedOut = error.name === 'TimeoutError';
        reject(new Error(timedOut
          ? `the page did not report window.__results within ${RESULTS_TIMEOUT_MS / 1000} s (a module that failed to load, a hung GPU call?)`
          : `waiting for the page's results failed: ${error.message}`));
      })
      .finally(() => page.off('pageerror', onError));
  });
}

/** The whole suite in one browser: one page load runs every case, each case one test. */
function suiteIn(engine: Engine): void {
  describe(`WebGPU in headless ${ENGINE_NAMES[engine]}`, () => {
    let browser: LaunchedBrowser | undefined;
    let server: TestServer | undefined;
    let results: PageResults | undefined;
    /** Why there are no results, when there are none. */
    let setupError: Error | undefined;
    const pageErrors: string[] = [];

    beforeAll(async () => {
      const t0 = Date.now();
      try {
        // Both at once, each kept as soon as it is up, so that afterAll closes whichever started.
        const started = await Promise.allSettled([
          launchBrowser(engine).then((c) => (browser = c)),
          startViteServer().then((s) => (server = s)),
        ]);
        for (const s of started) if (s.status === 'rejected') throw s.reason;
        if (!browser || !server) throw new Error('unreachable: the browser and the server both started');
        console.log(`browser: ${browser.description}; server: ${server.origin}`);
        const page = await browser.browser.newPage();
        page.on('console', forwardConsole);
        page.on('pageerror', (error) => {
          pageErrors.push(errorText(error));
          console.error(`[page uncaught] ${error instanceof Error && error.stack ? error.stack : errorText(error)}`);
        });
        page.on('requestfailed', (request) => console.warn(`[page request failed] ${request.url()}: ${request.failure()?.errorText}`));
        page.on('response', (response) => {
          if (response.status() >= 400) console.warn(`[page response ${response.status()}] ${response.url()}`);
        });
        const resultsPromise = waitForResults(page);
        resultsPromise.catch(() => {}); // handled below; keeps a goto failure from leaving it unhandled
        await page.goto(server.url(PAGE_PATH), { waitUntil: 'load', timeout: 30_000 });
        results = await resultsPromise;
        const a = results.adapter;
        console.log(a
          ? `adapter: vendor '${a.vendor}', architecture '${a.architecture}', device '${a.device}', description '${a.description}'${a.isFallbackAdapter ? ' (fallback adapter)' : ''}`
          : 'adapter: none');
        console.log(`page: ${results.cases.length} cases in ${results.ms} ms; whole setup ${Date.now() - t0} ms`);
      } catch (error) {
        setupError = error as Error;
      }
    });

    afterAll(async () => {
      await Promise.allSettled([browser?.close(), server?.close()]);
    });

    /** The results, or a failure that says why there are none. */
    function pageResults(): PageResults {
      if (setupError) throw setupError;
      if (!results) throw new Error('no results from the page');
      return results;
    }

    function caseResult(name: string): CaseResult {
      const r = pageResults();
      if (r.fatal && !r.cases.some((c) => c.name === name)) throw new Error(`the page stopped before '${name}': ${r.fatal}`);
      const found = r.cases.find((c) => c.name === name);
      if (!found) throw new Error(`the page did not report '${name}'`);
      return found;
    }

    describe('the page', () => {
      it('finds an adapter, runs every case, with no page errors or uncaptured GPU errors', () => {
        const r = pageResults();
        expect(r.fatal, 'the page stopped').toBeUndefined();
        expect(r.adapter, 'no WebGPU adapter').toBeDefined();
        expect(r.cases.map((c) => c.name)).toEqual(CASES.map((c) => c.name));
        expect(pageErrors, 'uncaught errors in the page').toEqual([]);
        expect(r.uncapturedErrors, 'uncapturederror events on the device').toEqual([]);
      });

      describe.each(CASES.map((c) => c.name))('%s', (name) => {
        it('matches the reference', () => {
          const c = caseResult(name);
          // The message says what was checked; on failure, what went wrong.
          expect(c.ok, c.message).toBe(true);
          expect(c.withinTolerance, `${c.maxUlps} ULPs, ${c.tolerance}`).toBe(true);
        });
      });
    });
  });
}

for (const engine of browserEngines()) suiteIn(engine);
