import { defineConfig } from 'vitest/config';

// `npm run soak`: the long runs, kept out of `npm test` (the default config's projects do not
// include test/soak). Dawn is a native addon: one fork, files one after another.
export default defineConfig({
  test: {
    include: ['test/soak/**/*.soak.ts'],
    // Picks the adapter once (WEBGPU_ADAPTER), prints it, and pins it for the file.
    globalSetup: ['test/gpu/global-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    // global.gc, so that the memory figures are of live objects, not of garbage not yet collected.
    execArgv: ['--expose-gc'],
    testTimeout: 1_800_000,
    hookTimeout: 60_000,
  },
});
