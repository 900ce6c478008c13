import { defineConfig } from 'vite';

// `npm start`: demo/node/main.ts bundled for Node (an SSR build) into dist-node/main.js, ESM,
// with the `?raw` WGSL imports inlined as strings. `webgpu` (Dawn, a native addon) stays an import.
export default defineConfig({
  build: {
    ssr: 'demo/node/main.ts',
    outDir: 'dist-node',
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    sourcemap: true,
    rolldownOptions: {
      output: { format: 'es', entryFileNames: 'main.js' },
    },
  },
  ssr: {
    target: 'node',
    external: ['webgpu'],
  },
});
