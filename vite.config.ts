import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The 'webgpu-rmsprop/tfjs' entry (`vite build --mode tfjs`, after the core's build): dist/tfjs.js, which
 * imports the core from './index.js' (src/tfjs imports it as '../index.js'), so that there is one copy of
 * the core and its per-device caches, and imports nothing of TF.js (it takes the caller's `tf`).
 */
const tfjsBuild = {
  lib: { entry: 'src/tfjs/index.ts', formats: ['es' as const], fileName: () => 'tfjs.js' },
  outDir: 'dist',
  emptyOutDir: false,
  target: 'es2022',
  sourcemap: true,
  minify: false,
  rolldownOptions: {
    external: (source: string, importer: string | undefined) => source === '../index.js' && (importer ?? '').includes('/src/tfjs/'),
    // The external reaches `paths` resolved against its importer: src/index.js, the core, is dist/index.js beside it.
    output: { paths: (id: string) => (id.endsWith('/src/index.js') || id === '../index.js' ? './index.js' : id) },
  },
};

/**
 * TF.js's ES modules (each package's "module" build) for every bare '@tensorflow/tfjs-*' import, in the
 * test projects that run TF.js in Node: so that tfjs-layers and the tests share one tfjs-core. Node
 * would load the CommonJS "main" for some of them, a second copy with its own class registry
 * (tf.serialization), where a saved model's optimizer would not be found.
 */
const TFJS_ES_MODULES = {
  find: /^@tensorflow\/(tfjs-[a-z-]+)$/,
  replacement: fileURLToPath(new URL('./node_modules/@tensorflow/$1/dist/index.js', import.meta.url)),
};

// One config for the library build (`npm run build`: dist/index.js, ESM, WGSL inlined; then dist/tfjs.js, above)
// and the tests.
export default defineConfig(({ mode }) => ({
  build: mode === 'tfjs' ? tfjsBuild : {
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
          // puppeteer drives Debian's Chromium (Dawn) and Firefox (wgpu) against a Vite server on 127.0.0.1;
          // the global setup says which browsers run (Firefox is left out, saying so, only where none exists).
          globalSetup: ['test/browser/global-setup.ts'],
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
        resolve: {
          alias: [
            { find: /^webgpu-rmsprop$/, replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
            { find: /^webgpu-rmsprop\/tfjs$/, replacement: fileURLToPath(new URL('./src/tfjs/index.ts', import.meta.url)) },
            TFJS_ES_MODULES,
          ],
        },
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
        resolve: { alias: [TFJS_ES_MODULES] },
        test: {
          name: 'tfjs',
          include: ['test/tfjs/**/*.test.ts'],
          // TF.js through Vite, as in an app's bundle (see 'examples'); Dawn in one process per file.
          server: { deps: { inline: [/@tensorflow\//] } },
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 180_000,
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
}));
