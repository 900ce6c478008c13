import { defineConfig } from 'vite';

// `npm start` and `npm run verify`: demo/node/main.ts and demo/node/verify.ts bundled for Node (an
// SSR build) into dist-node/, ESM, with the `?raw` WGSL imports inlined as strings. `webgpu`
// (Dawn, a native addon) stays an import.
export default defineConfig({
  build: {
    ssr: true,
    outDir: 'dist-node',
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    sourcemap: true,
    rolldownOptions: {
      input: { main: 'demo/node/main.ts', verify: 'demo/node/verify.ts' },
      output: { format: 'es', entryFileNames: '[name].js' },
    },
  },
  ssr: {
    target: 'node',
    external: ['webgpu'],
  },
});
