/**
 * The browsers of the browser tests, and how to launch each headless with WebGPU: Chromium (Dawn, with
 * Tint compiling the WGSL) and Firefox (wgpu, with naga compiling it): two WebGPU implementations and
 * two WGSL compilers. Never downloads a browser (.puppeteerrc.cjs sets skipDownload).
 *
 * Without a GPU, Chromium runs WebGPU on its own SwiftShader; Firefox on the Vulkan driver the loader
 * finds, lavapipe where Mesa's is installed (`npm run setup` installs it), else SwiftShader, or the one
 * `WEBGPU_ADAPTER` names ({@link firefoxVulkan}). Firefox's adapter info strings are empty, so a test names
 * Firefox's adapter from what it knows, never from `adapter.info`.
 */
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer';
import { adapterChoice, findIcd, INSTALL_HINT } from '../../demo/node/adapters';
import { closeOnce, launchChromium } from './chromium';

/** A browser engine the tests drive. */
export type Engine = 'chromium' | 'firefox';

/** How each engine is named in test titles and logs. */
export const ENGINE_NAMES: Readonly<Record<Engine, string>> = { chromium: 'Chromium', firefox: 'Firefox' };

/** Firefox's executables looked for on PATH, in order, after FIREFOX_EXECUTABLE_PATH. */
export const FIREFOX_NAMES: readonly string[] = ['firefox-esr', 'firefox'];
/** Where Firefox lives outside PATH on macOS. */
const FIREFOX_APP_PATHS: readonly string[] = ['/Applications/Firefox.app/Contents/MacOS/firefox'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Firefox's executable: `FIREFOX_EXECUTABLE_PATH` when set (it must exist), else `firefox-esr`, then
 * `firefox`, on PATH, else the macOS app. Returns a reason instead of a path when there is none.
 *
 * @example
 * ```ts
 * const found = findFirefox(); // { path: '/usr/bin/firefox-esr' }
 * ```
 */
export function findFirefox(env: NodeJS.ProcessEnv = process.env): { path: string } | { missing: string } {
  const fromEnv = env['FIREFOX_EXECUTABLE_PATH'];
  if (fromEnv) {
    if (!existsSync(fromEnv)) {
      throw new Error(`FIREFOX_EXECUTABLE_PATH is '${fromEnv}', which does not exist: point it at a Firefox executable, `
        + 'or unset it to use firefox-esr or firefox from PATH.');
    }
    return { path: fromEnv };
  }
  const dirs = (env['PATH'] ?? '').split(delimiter).filter(Boolean);
  for (const name of FIREFOX_NAMES) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      if (executable(candidate)) return { path: candidate };
    }
  }
  const app = FIREFOX_APP_PATHS.find(executable);
  if (app) return { path: app };
  return {
    missing: `no Firefox found (FIREFOX_EXECUTABLE_PATH unset; no ${FIREFOX_NAMES.join(' or ')} on PATH): `
      + '`npm run setup` installs firefox-esr, or set FIREFOX_EXECUTABLE_PATH',
  };
}

/**
 * The engines the browser tests run in here: Chromium always (a missing Chromium fails with install
 * instructions), Firefox where one exists. `BROWSERS=chromium` (or `firefox`) runs one alone.
 *
 * @example
 * ```ts
 * describe.each(browserEngines())('in %s', (engine) => { ... });
 * ```
 */
export function browserEngines(env: NodeJS.ProcessEnv = process.env): Engine[] {
  const only = env['BROWSERS']?.split(',').map((s) => s.trim()).filter(Boolean);
  if (only) {
    const unknown = only.filter((e) => e !== 'chromium' && e !== 'firefox');
    if (unknown.length > 0) throw new Error(`BROWSERS names ${unknown.join(', ')}: use chromium, firefox or both (comma-separated).`);
  }
  const engines: Engine[] = ['chromium'];
  if ('path' in findFirefox(env)) engines.push('firefox');
  return only ? engines.filter((e) => only.includes(e)) : engines;
}

/**
 * The Vulkan driver Firefox is given: `WEBGPU_ADAPTER=lavapipe` or `swiftshader` (as for the Node GPU
 * tests) points Firefox's Vulkan loader at that CPU driver; `auto` (the default) and `hardware` leave
 * the loader to choose (a GPU, else lavapipe where installed, else SwiftShader). Chromium always runs
 * WebGPU on its own SwiftShader without a GPU, whatever this says.
 */
export function firefoxVulkan(env: NodeJS.ProcessEnv = process.env): { icd?: string; driver: string } {
  const choice = adapterChoice(env);
  if (choice === 'lavapipe' || choice === 'swiftshader') {
    const icd = findIcd(choice);
    if (!icd) throw new Error(`WEBGPU_ADAPTER=${choice} but its Vulkan driver is not installed: ${INSTALL_HINT[choice]}.`);
    return { icd, driver: choice === 'lavapipe' ? 'lavapipe' : 'SwiftShader' };
  }
  const icd = env['VK_ICD_FILENAMES'] ?? env['VK_DRIVER_FILES'];
  if (icd) {
    if (/lvp_icd/.test(icd)) return { driver: 'lavapipe' };
    if (/swiftshader/i.test(icd)) return { driver: 'SwiftShader' };
    return { driver: `the Vulkan driver of ${icd}` };
  }
  if (findIcd('lavapipe')) return { driver: 'a GPU the Vulkan loader finds, else lavapipe' };
  return { driver: 'a GPU the Vulkan loader finds, else SwiftShader' };
}

/** Firefox's preferences for WebGPU tests, each for a reason. */
export const FIREFOX_WEBGPU_PREFS: Readonly<Record<string, boolean>> = {
  // WebGPU is behind this preference on Linux in Firefox ESR.
  'dom.webgpu.enabled': true,
  // Without a GPU the only adapters are CPU Vulkan drivers (fallback adapters), which the blocklist refuses.
  'gfx.webgpu.ignore-blocklist': true,
};

/** A launched browser and how to close it. */
export interface LaunchedBrowser {
  readonly engine: Engine;
  readonly browser: Browser;
  readonly executablePath: string;
  /** Words for logs: the browser's version and, for Firefox, the driver it runs WebGPU on. */
  readonly description: string;
  /** Closes the browser and removes its temporary profile. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Launches `engine` headless with WebGPU enabled and a fresh temporary profile (puppeteer: the
 * DevTools protocol for Chromium, WebDriver BiDi for Firefox).
 *
 * @example
 * ```ts
 * const browser = await launchBrowser('firefox');
 * try {
 *   const page = await browser.browser.newPage();
 *   await page.goto(server.url('/demo/')); // served from 127.0.0.1: a secure context, with navigator.gpu
 * } finally {
 *   await browser.close();
 * }
 * ```
 */
export async function launchBrowser(engine: Engine): Promise<LaunchedBrowser> {
  if (engine === 'chromium') {
    const chromium = await launchChromium();
    const version = await chromium.browser.version();
    return { engine, ...chromium, close: () => chromium.close(), description: `${version} (${chromium.executablePath})` };
  }
  const found = findFirefox();
  if ('missing' in found) throw new Error(`Firefox: ${found.missing}`);
  const executablePath = found.path;
  const vulkan = firefoxVulkan();
  const userDataDir = mkdtempSync(join(tmpdir(), 'webgpu-rmsprop-firefox-'));
  const removeProfile = () => rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 });
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath,
      headless: true,
      userDataDir,
      extraPrefsFirefox: { ...FIREFOX_WEBGPU_PREFS },
      // The loader reads both names (VK_DRIVER_FILES is the newer).
      ...(vulkan.icd ? { env: { ...process.env, VK_ICD_FILENAMES: vulkan.icd, VK_DRIVER_FILES: vulkan.icd } } : {}),
      timeout: 60_000,
    });
  } catch (error) {
    removeProfile();
    throw new Error(`Could not launch ${executablePath} (WebDriver BiDi, prefs ${JSON.stringify(FIREFOX_WEBGPU_PREFS)}): `
      + `${(error as Error).message}`, { cause: error });
  }
  const close = closeOnce(browser, removeProfile);
  let version: string;
  try {
    version = await browser.version();
  } catch (error) {
    await close();
    throw error;
  }
  return {
    engine,
    browser,
    executablePath,
    description: `${version} (${executablePath}), WebGPU on ${vulkan.driver}`,
    close,
  };
}
