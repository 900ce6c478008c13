import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));

// The demo page (`npm run demo`, `npm run build:demo`): demo/web/ is the root; it imports the
// library's TypeScript source (src/) and the demo problems (demo/problems/), outside that root.
export default defineConfig({
  root: 'demo/web',
  base: './', // the built files work from any folder
  server: { fs: { allow: [repoRoot] } },
  build: {
    outDir: '../../dist-demo',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
});
