/**
 * `npm run verify`: checks this machine's WebGPU adapter (WEBGPU_ADAPTER picks it, demo/node/dawn.ts)
 * with every variant of the rule against the CPU reference, at the adapter's tolerance, and the
 * step's bandwidth beside a device copy (demo/check/verify.ts). Prints a Markdown report to paste
 * into an issue; `--json FILE` also writes it as JSON. Exits 1 when anything fails.
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { adapterLine, requestNodeAdapter } from './dawn.js';
import { formatReport, requestCheckDevice, verifyDevice } from '../check/verify.js';

async function main(argv: readonly string[]): Promise<number> {
  let json: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = argv[++i];
    else if (a.startsWith('--json=')) json = a.slice('--json='.length);
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm run verify [-- --json FILE]\n' +
        'WEBGPU_ADAPTER=auto|swiftshader|lavapipe|hardware picks the adapter; GPU_TOLERANCE=bound compares at ' +
        'the WGSL bound even where 0 ULPs was measured.');
      return 0;
    } else throw new RangeError(`unknown flag '${a}': use --json FILE.`);
  }
  if (argv.includes('--json') && !json) throw new RangeError('--json needs a file name.');
  const found = await requestNodeAdapter();
  if (!found) throw new Error('No WebGPU adapter: Dawn found no Vulkan driver (see README, "Check your GPU").');
  console.log(adapterLine(found));
  const device = await requestCheckDevice(found.adapter, 'npm run verify');
  try {
    const report = await verifyDevice(device, found.adapter, {
      environment: 'Node, Dawn (the webgpu package)',
      now: () => performance.now(),
      log: (line) => console.log(line),
      forceBound: process.env.GPU_TOLERANCE === 'bound',
    });
    console.log(`\n${formatReport(report)}\n`);
    if (json) {
      writeFileSync(json, JSON.stringify(report, null, 2));
      console.log(`report written to ${json}`);
    }
    console.log(report.pass
      ? 'PASS. Please report it (README, "Check your GPU"): every GPU we hear about is evidence for the tolerance.'
      : 'FAIL. Please report it with the whole output (README, "Check your GPU").');
    return report.pass ? 0 : 1;
  } finally {
    device.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code), // Dawn keeps the event loop alive
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
