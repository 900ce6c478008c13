/**
 * Global setup of the Node GPU test projects (gpu, examples): picks the adapter once, as
 * WEBGPU_ADAPTER says (demo/node/dawn.ts), prints it with the tolerance the tests will use, pins
 * WEBGPU_ADAPTER to what was found so that every test file's process opens the same driver, and
 * hands the description to the files (harness `useDevice` checks it).
 */
import type { TestProject } from 'vitest/node';
import { adapterLine, requestNodeAdapter } from '../../demo/node/dawn.js';
import { toleranceFor } from '../../demo/check/compare.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The adapter description the run's global setup found (harness `useDevice` checks each file's). */
    gpuAdapter: string;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const found = await requestNodeAdapter();
  if (!found) {
    throw new Error('The GPU tests need a WebGPU adapter and Dawn found none: install lavapipe (mesa-vulkan-drivers) or ' +
      'SwiftShader (Debian\'s chromium), or run `npm run test:unit`. See README, "The two commands".');
  }
  const tolerance = toleranceFor(found.description, { forceBound: process.env.GPU_TOLERANCE === 'bound' });
  console.info(`[${project.name || 'soak'}] ${adapterLine(found)}; tolerance: ${tolerance.label} (${tolerance.why})`);
  if (found.kind !== 'software') process.env.WEBGPU_ADAPTER = found.kind;
  if (found.icd) {
    process.env.VK_ICD_FILENAMES = found.icd;
    process.env.VK_DRIVER_FILES = found.icd;
  }
  project.provide('gpuAdapter', found.description);
}
