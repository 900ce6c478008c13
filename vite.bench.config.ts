import { pathToFileURL } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

/**
 * Keeps `import.meta.url` meaning the source file's URL in the Node bundle, for the test helpers it
 * reuses (test/browser/vite-server.ts finds the repository root from it). Bundled as is, it would
 * be dist-bench/bench.js's URL.
 */
function sourceImportMetaUrl(): Plugin {
  return {
    name: 'bench:source-import-meta-url',
    transform(code, id) {
      if (id.includes('/node_modules/') || !/\/(test|bench)\//.test(id) || !code.includes('import.meta.url')) return null;
      return { code: code.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(id.split('?')[0]!).href)), map: null };
    },
  };
}

// `npm run bench` builds twice:
// - default mode: bench/node.ts and bench/probe.ts for Node (an SSR build) into dist-bench/bench.js
//   and probe.js, ESM, with the
//   library, its `?raw` WGSL and TF.js bundled in, so that it runs where only `webgpu` (Dawn, a
//   native addon) is installed, e.g. a GPU machine (bench/gpu.sh). puppeteer and vite stay imports:
//   only the browser half, which that machine skips, loads them.
// - `--mode web`: TF.js (core and WebGPU backend) as one browser ESM file, dist-bench/web/tfjs.js,
//   which the benchmark page (bench/web/) imports: Vite's dev server would otherwise have to
//   pre-bundle TF.js's CommonJS dependencies, which the shared dev-server setup turns off.
export default defineConfig(({ mode }) =>
  mode === 'web'
    ? {
        build: {
          lib: { entry: 'bench/web/tfjs-entry.ts', formats: ['es'], fileName: () => 'tfjs.js' },
          outDir: 'dist-bench/web',
          emptyOutDir: true,
          target: 'es2022',
          minify: false,
          reportCompressedSize: false,
        },
      }
    : {
        plugins: [sourceImportMetaUrl()],
        build: {
          ssr: true,
          outDir: 'dist-bench',
          emptyOutDir: false,
          target: 'node20',
          minify: false,
          sourcemap: true,
          reportCompressedSize: false,
          rolldownOptions: {
            input: { bench: 'bench/node.ts', probe: 'bench/probe.ts' },
            output: { format: 'es', entryFileNames: '[name].js' },
          },
        },
        ssr: { target: 'node', noExternal: true, external: ['webgpu', 'puppeteer', 'vite'] },
      },
);
