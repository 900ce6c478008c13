import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));

// The demo pages (`npm run demo`, `npm run build:demo`): demo/web/ is the root (index.html, the demo;
// check.html, "Check this GPU"); they import the library's TypeScript source (src/), the demo
// problems (demo/problems/) and the checks (demo/check/), outside that root.
export default defineConfig({
  root: 'demo/web',
  base: './', // the built files work from any folder
  server: { fs: { allow: [repoRoot] } },
  build: {
    outDir: '../../dist-demo',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    // Two pages: the demo, and "Check this GPU" (check.html).
    rolldownOptions: { input: { demo: `${repoRoot}demo/web/index.html`, check: `${repoRoot}demo/web/check.html` } },
  },
});
