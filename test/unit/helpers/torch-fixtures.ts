/**
 * The trajectories test/fixtures/make_torch_fixtures.py recorded from the real torch.optim.RMSprop
 * (PyTorch 1.13, CPU, float32), as torch.test.ts and torch-extensions.test.ts replay them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { RMSPropOptions } from '../../../src/rule/options.js';

/** One parameter tensor of a case: its start, the gradients fed, the parameters after each step, the final state. */
export interface TorchTensor {
  size: number;
  initial: number[];
  grads: number[][];
  params: number[][];
  state: { squareAvg: number[]; gradAvg?: number[]; momentumBuffer?: number[] };
}

export interface TorchCase {
  name: string;
  options: RMSPropOptions;
  steps: number;
  /** The learning rate of each step, where the case changes it. */
  lrPerStep?: number[];
  /** What clip_grad_norm_ returned at each step (torch-extensions, clipGradNorm cases). */
  gradNorms?: number[];
  tensors: TorchTensor[];
}

/**
 * Every case in test/fixtures/{folder}/, by file name. Files that hold no tensors (another test's
 * records, e.g. torch-extensions/lr-schedules.json) are left out.
 */
export function loadTorchCases(folder: 'torch' | 'torch-extensions'): TorchCase[] {
  const dir = new URL(`../../fixtures/${folder}/`, import.meta.url);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as TorchCase)
    .filter((c) => Array.isArray(c.tensors));
}
