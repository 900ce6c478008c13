/**
 * Finds and launches the system's Chromium for the browser tests: never downloads one
 * (.puppeteerrc.cjs sets skipDownload). Shared by every puppeteer-driven test (this suite, the demo's).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type LaunchOptions } from 'puppeteer';

/** Where Chrome or Chromium usually lives, tried in order after PUPPETEER_EXECUTABLE_PATH. */
export const SYSTEM_CHROMIUM_PATHS: readonly string[] = [
  '/usr/bin/chromium', // Debian, Ubuntu's snap shim
  '/usr/bin/chromium-browser', // older Ubuntu, Alpine, Fedora
  '/usr/bin/google-chrome-stable',
  '/usr/bin/google-chrome',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
  '/Applications/Chromium.app/Contents/MacOS/Chromium',
];

/**
 * The browser's executable: `PUPPETEER_EXECUTABLE_PATH` when set (puppeteer's own convention),
 * else the first of `candidates` ({@link SYSTEM_CHROMIUM_PATHS}) that exists. Throws, saying how to install one,
 * when there is none.
 *
 * @example
 * ```ts
 * const path = findChromium(); // '/usr/bin/chromium'
 * ```
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env, candidates: readonly string[] = SYSTEM_CHROMIUM_PATHS): string {
  const fromEnv = env['PUPPETEER_EXECUTABLE_PATH'];
  if (fromEnv) {
    if (!existsSync(fromEnv)) {
      throw new Error(`PUPPETEER_EXECUTABLE_PATH is '${fromEnv}', which does not exist: point it at a Chrome or Chromium executable, or unset it to use ${SYSTEM_CHROMIUM_PATHS[0]}.`);
    }
    return fromEnv;
  }
  const found = candidates.find((p) => existsSync(p));
  if (found) return found;
  throw new Error(
    `No Chrome or Chromium found for the browser tests (looked in ${candidates.join(', ') || 'no paths'}). ` +
      'Install one: `sudo apt-get install chromium` on Debian (it also brings SwiftShader, the CPU Vulkan that gives ' +
      'WebGPU an adapter without a GPU), or set PUPPETEER_EXECUTABLE_PATH to a Chrome/Chromium executable. ' +
      'This project never downloads a browser (.puppeteerrc.cjs sets skipDownload).',
  );
}

/**
 * Chromium's command-line flags for WebGPU tests, each for a reason.
 * Probed on Debian 12's Chromium 156, headless, as root, with no GPU: `--enable-unsafe-webgpu` alone
 * gives an adapter (google/swiftshader, a fallback adapter); without it requestAdapter() returns
 * null. `--enable-features=Vulkan`, `--use-angle=swiftshader`, `--use-webgpu-adapter=swiftshader`,
 * `--enable-unsafe-swiftshader` and `--ignore-gpu-blocklist` change nothing there, so none is passed:
 * on a machine with a GPU the tests then run on it.
 */
export const CHROMIUM_WEBGPU_FLAGS: readonly string[] = [
  // WebGPU on Linux is behind this flag; it is also what lets Dawn hand out SwiftShader (its CPU
  // Vulkan, bundled with Chromium) as the adapter when no GPU is there.
  '--enable-unsafe-webgpu',
  // We run as root (containers, CI), where Chromium refuses to start with its sandbox.
  '--no-sandbox',
  // Offline and reproducible: no update checks, component downloads, sync or first-run UI.
  // (puppeteer passes most of these by default too; listed so the launcher does not depend on it.)
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A launched browser and how to close it (also removes its temporary profile). */
export interface LaunchedChromium {
  readonly browser: Browser;
  readonly executablePath: string;
  /** Closes the browser and removes its profile directory. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Launches headless Chromium with WebGPU enabled and a fresh temporary profile.
 *
 * @example
 * ```ts
 * const chromium = await launchChromium();
 * try {
 *   const page = await chromium.browser.newPage();
 *   await page.goto(server.url('/demo/'));
 * } finally {
 *   await chromium.close();
 * }
 * ```
 */
export async function launchChromium(options: { extraArgs?: readonly string[]; launch?: LaunchOptions } = {}): Promise<LaunchedChromium> {
  const executablePath = findChromium();
  const userDataDir = mkdtempSync(join(tmpdir(), 'webgpu-rmsprop-chromium-'));
  const removeProfile = () => rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 });
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      userDataDir,
      args: [...CHROMIUM_WEBGPU_FLAGS, ...(options.extraArgs ?? [])],
      timeout: 30_000,
      ...options.launch,
    });
  } catch (error) {
    removeProfile();
    throw new Error(`Could not launch ${executablePath} (flags: ${CHROMIUM_WEBGPU_FLAGS.join(' ')}): ${(error as Error).message}`, { cause: error });
  }
  return { browser, executablePath, close: closeOnce(browser, removeProfile) };
}

/**
 * A browser's `close()` for a launch with a temporary profile: closes the browser, then removes the
 * profile (also when closing fails); a second call does nothing. Shared by every launcher here.
 */
export function closeOnce(browser: Browser, removeProfile: () => void): () => Promise<void> {
  let closed = false;
  return async () => {
    if (closed) return;
    closed = true;
    try {
      await browser.close();
    } finally {
      removeProfile();
    }
  };
}
