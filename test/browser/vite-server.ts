/**
 * A Vite dev server for browser tests, started in-process with the repo's vite.config.ts, on
 * 127.0.0.1 and a free port: pages served from it are a secure context (localhost), so they
 * have navigator.gpu, and they import the library's TypeScript source (WGSL through `?raw`) as the
 * demo does.
 */
import { fileURLToPath } from 'node:url';
import { createServer, type ViteDevServer } from 'vite';

/** The repository root (this file is test/browser/vite-server.ts). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A running dev server. */
export interface TestServer {
  readonly server: ViteDevServer;
  /** The server's origin, e.g. `http://127.0.0.1:40123`. */
  readonly origin: string;
  /** An absolute URL for a path from the repo root, e.g. `url('/test/browser/page/index.html')`. */
  url(path: string): string;
  /** Stops the server. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts Vite's dev server, by default on the repo root with the repo's config; `options` serve
 * another config and root instead (the demo: `vite.demo.config.ts`, root `demo/web`), with paths
 * in `url()` then relative to that root.
 *
 * @example
 * ```ts
 * const server = await startViteServer();
 * await page.goto(server.url('/test/browser/page/index.html'));
 * await server.close();
 * const demo = await startViteServer({ configFile: 'vite.demo.config.ts', root: 'demo/web' });
 * await page.goto(demo.url('/index.html'));
 * ```
 */
export async function startViteServer(options: { configFile?: string; root?: string } = {}): Promise<TestServer> {
  const { configFile = 'vite.config.ts', root = '' } = options;
  const server = await createServer({
    configFile: `${REPO_ROOT}${configFile}`,
    root: `${REPO_ROOT}${root}`,
    logLevel: 'warn',
    clearScreen: false,
    server: {
      host: '127.0.0.1',
      port: 0, // the OS picks a free port
      strictPort: true,
      hmr: false, // a test page never reloads
      watch: null, // no file watcher: the files do not change during a run
    },
    // The library has no dependencies to pre-bundle; no scan of every HTML entry in the repo, and
    // no mid-run reload when a new one is found.
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  try {
    await server.listen();
  } catch (error) {
    await server.close();
    throw error;
  }
  const address = server.httpServer?.address();
  if (!address || typeof address === 'string') {
    await server.close();
    throw new Error(`The Vite server has no TCP address (got ${String(address)}).`);
  }
  const origin = `http://127.0.0.1:${address.port}`;
  let closed = false;
  return {
    server,
    origin,
    url: (path) => new URL(path, origin).href,
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
    },
  };
}
