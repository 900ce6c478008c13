/**
 * The 8-bit state fixtures of test/fixtures/blockwise8/ (test/fixtures/make_blockwise8_fixtures.py, an
 * independent implementation on PyTorch 1.13), and the inputs they were made from, regenerated here with
 * the same generator (mulberry32) and the same arithmetic.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../../../demo/problems/random.js';
import { BLOCK_SIZE } from '../../../src/rule/blockwise8.js';
import type { RMSPropOptions } from '../../../src/rule/options.js';

const DIR = fileURLToPath(new URL('../../fixtures/blockwise8/', import.meta.url));

export interface Blockwise8Snapshot {
  readonly size: number;
  readonly param: Float32Array;
  readonly codes?: Uint8Array;
  readonly absmax?: Float32Array;
  readonly squareAvg?: Float32Array;
}

export interface Blockwise8Case {
  readonly name: string;
  readonly seed: number;
  readonly steps: number;
  readonly sizes: readonly number[];
  readonly options: Partial<RMSPropOptions>;
  readonly start: Float32Array[];
  /** By 1-based step. */
  readonly snapshots: ReadonlyMap<number, Blockwise8Snapshot[]>;
}

const bytes = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const f32 = (b64: string) => new Float32Array(bytes(b64).buffer);

export function loadBlockwise8Case(name: string): Blockwise8Case {
  const raw = JSON.parse(readFileSync(`${DIR}${name}.json`, 'utf8'));
  const snapshots = new Map<number, Blockwise8Snapshot[]>();
  for (const [step, tensors] of Object.entries(raw.snapshots as Record<string, Record<string, unknown>[]>)) {
    snapshots.set(Number(step), tensors.map((t) => ({
      size: t.size as number,
      param: f32(t.param as string),
      ...(t.codes !== undefined ? { codes: bytes(t.codes as string), absmax: new Float32Array(t.absmax as number[]) } : {}),
      ...(t.squareAvg !== undefined ? { squareAvg: f32(t.squareAvg as string) } : {}),
    })));
  }
  return { ...raw, start: (raw.start as string[]).map(f32), snapshots };
}

export function loadDynamicMapFixture(): { values: number[]; bits: number[] } {
  return JSON.parse(readFileSync(`${DIR}dynamic-map.json`, 'utf8'));
}

export const BLOCKWISE8_CASES = ['default', 'decay-maximize', 'initial-scale'];

/** Gradient magnitudes per block, as the script's SCALES. */
const SCALES = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0];

/**
 * The case's inputs as the script made them: the starting parameters (checked against the fixture's
 * `start`), then `grads(step)` for each 1-based step, in order (one generator for the whole case).
 */
export function caseInputs(c: Blockwise8Case): { params: Float32Array[]; grads: (step: number) => Float32Array[] } {
  const rand = mulberry32(c.seed);
  const params = c.sizes.map((size) => Float32Array.from({ length: size }, () => 2 * rand() - 1));
  const grads = (step: number) => c.sizes.map((size, t) => {
    const g = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const scale = SCALES[(Math.floor(i / BLOCK_SIZE) + step + t) % SCALES.length]!;
      g[i] = (2 * rand() - 1) * scale;
    }
    if (step % 7 === 3) g.fill(0, BLOCK_SIZE, Math.min(2 * BLOCK_SIZE, size));
    for (let i = 0; i < size; i += 97) g[i] = 0;
    return g;
  });
  return { params, grads };
}
