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
    ],
  },
});
