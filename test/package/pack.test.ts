/**
 * The published package, used from outside the repository: `npm run build`, `npm pack`, then the
 * tarball installed into a fresh project in the system's temp directory, which uses it
 * - in Node, with WebGPU from the `webgpu` package (Dawn);
 * - in Deno, whose WebGPU is built in (wgpu);
 * - in Chromium, from a plain `<script type="module">` with an import map, no bundler;
 * - in Chromium, from an app bundled by Vite;
 * - from TypeScript, strict, with NodeNext and Bundler module resolution;
 * - its second entry point, 'webgpu-rmsprop/tfjs', in Node with TF.js's own Node builds (tfjs-core and
 *   the WebGPU backend, linked from this repository, as a TF.js app has them) and from TypeScript.
 * Each trains a few steps on the GPU and on the package's CPU reference (test/package/consumer/check.js)
 * and must agree with it: bit for bit on SwiftShader. The dev tools the consumer needs (webgpu, vite,
 * typescript, @webgpu/types) are this repository's, linked in; the package itself comes from the tarball.
 */
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type LaunchedChromium } from '../browser/chromium.js';
import { adapterLine, childGpuEnv, requestNodeAdapter, type NodeGpu } from '../../demo/node/dawn.js';
import { CheckedReference } from '../../demo/check/checked-reference.js';
import { toleranceFor } from '../../demo/check/compare.js';
import type { MultiplyAdd } from '../../src/index.js';
import { OPTIONS, STEPS, trainingData } from './consumer/data.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CONSUMER_FILES = fileURLToPath(new URL('./consumer/', import.meta.url));
const require = createRequire(import.meta.url);
const execFileAsync = promisify(execFile);
/** TF.js, for the 'webgpu-rmsprop/tfjs' consumer: the app's own packages (the package has them as optional peers). */
const TFJS_PACKAGES = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-webgpu'];

/** What consumer/check.js reports. */
interface CheckResult {
  readonly steps: number;
  readonly compared: number;
  readonly changed: number;
  readonly worstUlps: number;
  readonly multiplyAdd: MultiplyAdd;
  readonly validationError: string | null;
  readonly adapter: string;
  /** The GPU's parameters after the last step, as f32 bit patterns. */
  readonly bits: number[][];
  readonly failure?: string;
}

/**
 * The consumer's result must be the reference's, at its adapter's tolerance, after real training:
 * the same steps replayed on the repository's CPU twin (demo/check/checked-reference.ts, rounding as
 * the consumer's fma did), which also bounds how far a conformant GPU may be; bit for bit on the
 * adapters where that is measured.
 */
async function expectTrained(result: CheckResult, where: string): Promise<void> {
  expect(result.failure, `${where}: the page threw`).toBeUndefined();
  const tolerance = toleranceFor(result.adapter);
  console.info(`${where}: adapter ${result.adapter}, fma ${result.multiplyAdd}, tolerance ${tolerance.label}; ` +
    `worst ${result.worstUlps} ULPs over ${result.compared} values (the package's own reference)`);
  expect(result.validationError, `${where}: WebGPU validation error`).toBeNull();
  expect(result.steps).toBe(STEPS);
  expect(result.compared).toBe(1037 + 3);
  expect(result.changed, `${where}: the GPU changed the parameters`).toBe(1037);
  const { initial, grads } = trainingData();
  const specs = initial.map((p, i) => ({ name: `t${i}`, param: p.slice(), grad: new Float32Array(p.length) }));
  const twin = new CheckedReference(specs, OPTIONS, { multiplyAdd: result.multiplyAdd });
  for (const step of grads) {
    step.forEach((g, i) => specs[i]!.grad.set(g));
    twin.step();
  }
  const gpuParams = result.bits.map((b) => new Float32Array(Uint32Array.from(b).buffer));
  const { worst } = await twin.compareWith({ readParams: async () => gpuParams, stateDict: () => twin.stateDict() }, tolerance, { state: false });
  expect(worst.failures, `${where} on ${result.adapter} (${tolerance.label})`).toEqual([]);
  console.info(`${where}: ${worst.where}${worst.boundUsed > 0 ? `; ${(100 * worst.boundUsed).toPrecision(3)}% of the WGSL bound` : ''}`);
}

/** Runs a command, throwing with its output when it fails. */
function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** The adapter WEBGPU_ADAPTER picks here (demo/node/dawn.ts): the Node and Deno children use its Vulkan driver too. */
let adapter: NodeGpu | null = null;

/** WebGPU in a child process, on the same Vulkan driver as this process's adapter. */
function gpuEnv(): NodeJS.ProcessEnv {
  return childGpuEnv(adapter);
}

/** The last line of a child's stdout, as JSON. */
function lastJsonLine<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as T;
}

/** A static file server over `root` on 127.0.0.1, recording every path asked for. */
async function serveStatic(root: string): Promise<{ origin: string; requests: string[]; close(): Promise<void> }> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.map': 'application/json', '.json': 'application/json' };
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path !== '/favicon.ico') requests.push(path); // the browser asks for it on its own
    const file = normalize(join(root, path));
    if (!file.startsWith(root) || !existsSync(file) || !types[extname(file)]) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)]! }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('The static server has no TCP address.');
  return {
    origin: `http://127.0.0.1:${address.port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Where a package of this repository's node_modules lives (following links). */
function repoPackage(name: string): string {
  return realpathSync(dirname(require.resolve(`${name}/package.json`, { paths: [REPO] })));
}

let temp: string; // the consumer project, outside the repo
let packed: { filename: string; files: { path: string }[] };
let server: Awaited<ReturnType<typeof serveStatic>> | undefined;
let chromium: LaunchedChromium | undefined;

beforeAll(async () => {
  adapter = await requestNodeAdapter();
  console.info(adapter ? `package tests: ${adapterLine(adapter)} (for the Node and Deno children; Chromium uses its own SwiftShader)` : 'package tests: no WebGPU adapter in Node');
  run('npm', ['run', 'build', '--silent'], REPO);
  temp = realpathSync(mkdtempSync(join(tmpdir(), 'webgpu-rmsprop-consumer-')));
  [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', temp], REPO)) as [typeof packed];
  cpSync(CONSUMER_FILES, temp, { recursive: true });
  writeFileSync(join(temp, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
  // The package under test, from the tarball alone (it has no dependencies: nothing is downloaded).
  run('npm', ['install', join(temp, packed.filename), '--no-audit', '--no-fund', '--ignore-scripts', '--prefer-offline', '--no-package-lock'], temp);
  // The consumer's own dev tools, linked from this repo rather than downloaded again.
  for (const tool of ['webgpu', 'vite', 'typescript', '@webgpu/types', ...TFJS_PACKAGES]) {
    const link = join(temp, 'node_modules', tool);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(repoPackage(tool), link, 'dir');
  }
}, 180_000);

afterAll(async () => {
  await chromium?.close();
  await server?.close();
  if (temp) rmSync(temp, { recursive: true, force: true });
});

describe('the tarball', () => {
  it('holds the built module, its types and the docs, and nothing else', () => {
    const files = packed.files.map((f) => f.path).sort();
    // Modules at dist/ (the two entry points and their maps); types also in src/'s folders (rule, gpu, state, tfjs).
    const shipped = /^(dist\/[\w.-]+\.(js|js\.map|d\.ts)|dist\/(rule|gpu|state|tfjs)\/[\w.-]+\.d\.ts|README\.md|LICENSE|CHANGELOG\.md|package\.json)$/;
    for (const f of files) expect(f, 'a file the package should not ship').toMatch(shipped);
    expect(files).toEqual(expect.arrayContaining([
      'dist/index.js', 'dist/index.d.ts', 'dist/tfjs.js', 'dist/tfjs/index.d.ts', 'README.md', 'LICENSE', 'CHANGELOG.md', 'package.json',
    ]));
    // Every module a .d.ts refers to is in the tarball (a missing one is an `any` for the consumer).
    for (const f of files.filter((f) => f.endsWith('.d.ts'))) {
      const text = readFileSync(join(temp, 'node_modules/webgpu-rmsprop', f), 'utf8');
      for (const [, spec] of text.matchAll(/from '(\.[^']+)'/g)) {
        expect(files, `${f} imports ${spec}`).toContain(join(dirname(f), spec!.replace(/\.js$/, '.d.ts')));
      }
    }
  });

  it('installs as a package with no dependencies and the entry points package.json names', () => {
    const installed = join(temp, 'node_modules', 'webgpu-rmsprop');
    expect(realpathSync(installed).startsWith(temp + sep), 'installed from the tarball into the temp project').toBe(true);
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.dependencies ?? {}).toEqual({});
    // TF.js is a peer of 'webgpu-rmsprop/tfjs' only, and optional: a user of the core installs none of it.
    expect(pkg.peerDependencies).toEqual({ '@tensorflow/tfjs-core': '^4.22.0', '@tensorflow/tfjs-backend-webgpu': '^4.22.0' });
    expect(pkg.peerDependenciesMeta).toEqual({ '@tensorflow/tfjs-core': { optional: true }, '@tensorflow/tfjs-backend-webgpu': { optional: true } });
    expect(pkg.sideEffects).toBe(false);
    expect(pkg.type).toBe('module');
    const dot = (pkg.exports as Record<string, Record<string, string>>)['.']!;
    expect(Object.keys(dot)[0], 'types first, as TypeScript requires').toBe('types');
    expect(existsSync(join(installed, dot.types!))).toBe(true);
    expect(existsSync(join(installed, dot.import!))).toBe(true);
    expect(createRequire(join(temp, 'x.js')).resolve('webgpu-rmsprop')).toBe(join(installed, 'dist/index.js'));
    const tfjs = (pkg.exports as Record<string, Record<string, string>>)['./tfjs']!;
    expect(Object.keys(tfjs)[0], 'types first').toBe('types');
    expect(existsSync(join(installed, tfjs.types!))).toBe(true);
    expect(createRequire(join(temp, 'x.js')).resolve('webgpu-rmsprop/tfjs')).toBe(join(installed, 'dist/tfjs.js'));
  });

  it('keeps TF.js out of the core: dist/index.js and its types name nothing of it; dist/tfjs.js imports only ./index.js', () => {
    const dist = join(temp, 'node_modules/webgpu-rmsprop/dist');
    for (const f of readdirSync(dist).filter((f) => /\.(js|d\.ts)$/.test(f))) {
      const text = readFileSync(join(dist, f), 'utf8');
      if (f === 'tfjs.js') continue;
      expect(text, `${f} names TF.js`).not.toMatch(/@tensorflow/);
    }
    const tfjs = readFileSync(join(dist, 'tfjs.js'), 'utf8');
    expect([...tfjs.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1])).toEqual(['./index.js']);
    expect(tfjs, 'nothing loaded at run time').not.toMatch(/\bimport\s*\(|require\s*\(|import\.meta/);
    expect(tfjs).not.toMatch(/from "@tensorflow/);
  });

  it('loads from CommonJS too (require of an ES module, Node >= 20.19 as engines says)', () => {
    const script = "const m = require('webgpu-rmsprop'); console.log(typeof m.RMSProp, typeof m.ReferenceRMSProp, m.presets.keras.alpha);";
    expect(run(process.execPath, ['--no-warnings', '-e', script], temp).trim()).toBe('function function 0.9');
  });

  it('carries the WGSL inside dist/index.js', () => {
    const wgsl = readFileSync(join(REPO, 'shaders/rmsprop.wgsl'), 'utf8');
    const js = readFileSync(join(temp, 'node_modules/webgpu-rmsprop/dist/index.js'), 'utf8');
    expect(js.includes(JSON.stringify(wgsl)), 'the shader source, as a string literal').toBe(true);
    // Nothing loads a shader at run time (comments may name shaders/rmsprop.wgsl, code may not).
    expect(js).not.toMatch(/\bfetch\s*\(|new URL\s*\(|import\s*\(|import\.meta/);
  });
});

describe('used from outside the repo', () => {
  it('trains in Node through Dawn, as the reference does', async () => {
    const result = lastJsonLine<CheckResult>(run(process.execPath, ['node-check.mjs'], temp, gpuEnv()));
    await expectTrained(result, 'Node');
  });

  it('trains in Deno (built-in WebGPU), as the reference does', async () => {
    const deno = join(repoPackage('deno'), 'bin.cjs'); // the npm package's launcher of its platform binary
    const env = { ...gpuEnv(), DENO_DIR: join(temp, '.deno'), DENO_NO_UPDATE_CHECK: '1' };
    const result = lastJsonLine<CheckResult>(run(process.execPath, [deno, 'run', '--no-prompt', 'deno-check.js'], temp, env));
    await expectTrained(result, 'Deno');
  });

  it("'webgpu-rmsprop/tfjs' trains in Node with TF.js's WebGPU backend on Dawn, as tf.train.rmsprop does", () => {
    const result = lastJsonLine<{ steps: number; worstUlps: number; className: string; expectedClassName: string; weightNames: string[]; validationError: string | null; adapter: string }>(
      run(process.execPath, ['tfjs-node-check.mjs'], temp, gpuEnv()));
    console.info(`Node, webgpu-rmsprop/tfjs: ${result.adapter}, worst ${result.worstUlps} ULPs against tf.train.rmsprop`);
    expect(result.validationError).toBeNull();
    expect(result.steps).toBe(5);
    // The bound of test/tfjs/trio.ts (TFJS_ULPS): the two round the mean square's new term differently.
    expect(result.worstUlps).toBeLessThanOrEqual(9);
    expect(result.className).toBe('WebGPURMSProp');
    expect(result.className).toBe(result.expectedClassName);
    expect(result.weightNames).toEqual(['iter', 'consumer/ours/rms', 'consumer/ours/momentum']);
  });

  it('type-checks with strict settings, NodeNext and Bundler resolution, the package\'s .d.ts included', async () => {
    const tsc = join(temp, 'node_modules/typescript/bin/tsc');
    // All at once (about 5 s each on 2 cores); NodeNext also checks the core's .d.ts files (skipLibCheck false).
    // 'webgpu-rmsprop/tfjs' (consumer-tfjs.ts) with skipLibCheck: tfjs-core 4.22 brings its own copy of
    // @webgpu/types, whose declarations clash with the app's under skipLibCheck false (TF.js's packaging,
    // not this package's: its .d.ts are checked when they are emitted, and the @ts-expect-error lines
    // there prove the types resolved).
    const configs = ['tsconfig.nodenext.json', 'tsconfig.bundler.json', 'tsconfig.tfjs-nodenext.json', 'tsconfig.tfjs-bundler.json'];
    await Promise.all(configs.map(async (config) => {
      try {
        await execFileAsync(process.execPath, [tsc, '-p', config], { cwd: temp, encoding: 'utf8' });
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        throw new Error(`tsc -p ${config} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    }));
    // And the checks have teeth: a wrong import is an error.
    writeFileSync(join(temp, 'wrong.ts'), "import { RMSprop } from 'webgpu-rmsprop';\nexport { RMSprop };\n");
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--types', '@webgpu/types', 'wrong.ts'], { cwd: temp, encoding: 'utf8' });
    expect(r.stdout).toMatch(/has no exported member named 'RMSprop'. Did you mean 'RMSProp'/);
  });

  it('type-checks with TypeScript 7 too, whose lib.dom declares WebGPU (no @webgpu/types: it would collide)', async (ctx) => {
    // TypeScript 7 goes into the temporary consumer project only (never this repository's node_modules),
    // from npm's cache when it is there. TYPESCRIPT7_TSC names a tsc of TypeScript 7 to use instead.
    let tsc = process.env.TYPESCRIPT7_TSC;
    if (!tsc) {
      const dir = join(temp, 'typescript7');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'package.json'), '{ "private": true }');
      const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock', 'typescript@^7'], { cwd: dir, encoding: 'utf8', timeout: 170_000 });
      if (r.status !== 0) {
        const offline = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH|offline/i.test(`${r.stdout}${r.stderr}`);
        if (offline) ctx.skip(`TypeScript 7 is not in npm's cache and the registry cannot be reached: set TYPESCRIPT7_TSC to a TypeScript 7 tsc to run this check`);
        throw new Error(`npm install typescript@^7 failed:\n${r.stdout}\n${r.stderr}`);
      }
      tsc = join(dir, 'node_modules/typescript/bin/tsc');
    }
    const version = run(process.execPath, [tsc, '--version'], temp).trim();
    expect(version, 'the TypeScript 7 check runs TypeScript 7').toMatch(/^Version 7\./);
    console.info(`consumer type-check: ${version}, lib.dom's WebGPU types`);
    for (const config of ['tsconfig.ts7.nodenext.json', 'tsconfig.ts7.bundler.json']) {
      const r = spawnSync(process.execPath, [tsc, '-p', config], { cwd: temp, encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`, `${version} -p ${config}`).toBe('');
      expect(r.status, `${version} -p ${config}`).toBe(0);
    }
    // The same teeth: a wrong import is an error.
    writeFileSync(join(temp, 'wrong.ts'), "import { RMSprop } from 'webgpu-rmsprop';\nexport { RMSprop };\n");
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--lib', 'ES2022,DOM', '--types', '', 'wrong.ts'], { cwd: temp, encoding: 'utf8' });
    expect(r.stdout).toMatch(/has no exported member named 'RMSprop'. Did you mean 'RMSProp'/);
  }, 180_000);

  describe('in Chromium', () => {
    beforeAll(async () => {
      // The Vite app: a production build of vite-app/index.html, which imports the package by name.
      run(process.execPath, [join(temp, 'node_modules/vite/bin/vite.js'), 'build', '--base', './', '--logLevel', 'warn', '--outDir', 'dist'], join(temp, 'vite-app'));
      server = await serveStatic(temp);
      chromium = await launchChromium();
    }, 120_000);

    async function load(path: string): Promise<{ result: CheckResult; requests: string[] }> {
      const page = await chromium!.browser.newPage();
      try {
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        const from = server!.requests.length;
        await page.goto(`${server!.origin}${path}`);
        await page.waitForFunction(() => (window as { __result?: unknown }).__result !== undefined, { timeout: 90_000 });
        const result = await page.evaluate(() => (window as unknown as { __result: CheckResult }).__result);
        expect(errors, 'page errors').toEqual([]);
        return { result, requests: server!.requests.slice(from) };
      } finally {
        await page.close();
      }
    }

    it('trains from a plain <script type="module"> with an import map, no bundler', async () => {
      const { result, requests } = await load('/plain.html');
      await expectTrained(result, 'plain module');
      expect(requests).toContain('/node_modules/webgpu-rmsprop/dist/index.js');
      expect(requests.filter((r) => /\.wgsl/.test(r)), 'no shader fetched at run time').toEqual([]);
    });

    it('trains in a Vite app that imports it by name', async () => {
      const built = readdirSync(join(temp, 'vite-app/dist/assets'));
      expect(built.filter((f) => !f.endsWith('.js')), 'no .wgsl or other asset emitted').toEqual([]);
      const bundle = built.map((f) => readFileSync(join(temp, 'vite-app/dist/assets', f), 'utf8')).join('\n');
      const overrides = readFileSync(join(REPO, 'shaders/rmsprop.wgsl'), 'utf8').split('\n').filter((l) => l.startsWith('override '));
      expect(overrides.length).toBeGreaterThan(0);
      for (const line of overrides) expect(bundle, 'the WGSL is in the bundle').toContain(line);
      const { result, requests } = await load('/vite-app/dist/index.html');
      await expectTrained(result, 'Vite app');
      expect(requests.every((r) => r.startsWith('/vite-app/dist/')), `only the app's files: ${requests.join(', ')}`).toBe(true);
      expect(requests.filter((r) => /\.wgsl/.test(r))).toEqual([]);
    });
  });
});
