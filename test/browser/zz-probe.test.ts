import { build } from 'vite';
import { it } from 'vitest';
import { launchChromium } from './chromium';
import { startViteServer, REPO_ROOT } from './vite-server';
import { existsSync } from 'node:fs';
it('probe', async () => {
if (!existsSync(REPO_ROOT + 'dist-test/tfjs-web/tfjs.js')) await build({ configFile: false, root: REPO_ROOT, logLevel: 'warn', build: { lib: { entry: 'bench/web/tfjs-entry.ts', formats: ['es'], fileName: () => 'tfjs.js' }, outDir: 'dist-test/tfjs-web', emptyOutDir: true, target: 'es2022', minify: false } });
const server = await startViteServer();
const sets = JSON.parse(process.env.PROBE_SETS ?? '[[]]');
for (const extraArgs of sets) {
  const c = await launchChromium({ extraArgs });
  try {
    const page = await c.browser.newPage();
    await page.goto(server.url('/dist-test/probe/index.html'));
    await page.waitForFunction(() => (window as any).__probe, { timeout: 120000 });
    console.log(JSON.stringify(extraArgs), await page.evaluate(() => (window as any).__probe));
  } catch (e) { console.log(JSON.stringify(extraArgs), 'failed', (e as Error).message); }
  await c.close();
}
await server.close();

}, 600000);
