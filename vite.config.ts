import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// One config for the library build (`npm run build`: dist/index.js, ESM, WGSL inlined) and the tests.
export default defineConfig({
  build: {
    lib: { entry: 'src/index.ts', formats: ['es'], fileName: 'index' },
    outDir: 'dist',
    target: 'es2022',
    sourcemap: true,
    minify: false,
  },
  test: {
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'gpu',
          include: ['test/gpu/**/*.test.ts'],
          // Picks the adapter once (WEBGPU_ADAPTER), prints it, and pins it for every file.
          globalSetup: ['test/gpu/global-setup.ts'],
          // Dawn is a native addon: one process per file, files one after another (SwiftShader uses every core).
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          // puppeteer drives Debian's Chromium (SwiftShader WebGPU) against a Vite server on localhost.
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        // The examples import 'webgpu-rmsprop' as an app does; here that name is the source, so they
        // run against the code under test with no build (test/package checks the built package).
        resolve: { alias: [{ find: /^webgpu-rmsprop$/, replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)) }] },
        test: {
          name: 'examples',
          include: ['examples/**/*.test.ts'],
          globalSetup: ['test/gpu/global-setup.ts'],
          // TF.js through Vite, as in an app's bundle: its ES modules (extensionless imports, which
          // Node cannot load) give the gradient registrations that Node's CommonJS build leaves out.
          server: { deps: { inline: [/@tensorflow\//] } },
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'package',
          include: ['test/package/**/*.test.ts'],
          // Builds and packs the library, installs the tarball in a temporary project outside the repo,
          // and uses it from Node (Dawn), Deno, Chromium (plain ES module and a Vite app) and tsc.
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
