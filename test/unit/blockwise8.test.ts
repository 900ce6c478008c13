/**
 * 8-bit blockwise state (stateDtype 'int8-blockwise'): the CPU twin (src/rule/blockwise8.ts) against
 * an independent implementation on PyTorch 1.13 (test/fixtures/make_blockwise8_fixtures.py): the map's
 * 256 values, and every code, absmax and parameter after the recorded steps, bit for bit.
 */
import { describe, expect, it } from 'vitest';
import {
  BLOCK_SIZE, blockwise8Step, createBlockwise8State, dequantizeBlockwise, DYNAMIC_MAP, MIN_8BIT_SIZE, quantizeBlockwise,
  quantizeCode, ZERO_CODE, type Blockwise8State, BUCKET_CODES, BUCKET_HIGH, BUCKET_LOW,
  BUCKET_THRESHOLD_BITS, DYNAMIC_MIDPOINTS, quantizeCodeBuckets,
} from '../../src/rule/blockwise8.js';
import { createReferenceState, referenceStep, type ReferenceState } from '../../src/rule/reference.js';
import { resolveOptions } from '../../src/rule/options.js';
import { ReferenceRMSProp } from '../../src/rule/reference-optimizer.js';
import { quantizerTables } from '../../src/gpu/update-pass.js';
import { BLOCKS_PER_WORKGROUP, blockwise8Layout, forceBlockwise8Layout } from '../../src/gpu/blockwise8-layout.js';
import { convertStateDict } from '../../src/state/state-dict.js';
import { safetensorsToParams, safetensorsToStateDict, stateDictToSafetensors } from '../../src/state/safetensors.js';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCKWISE8_CASES, caseInputs, loadBlockwise8Case, loadDynamicMapFixture } from './helpers/blockwise8-fixtures.js';

const bitsOf = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

describe('the dynamic map', () => {
  it('is bitsandbytes\' create_dynamic_map(signed=True) as PyTorch computes it, bit for bit', () => {
    const fixture = loadDynamicMapFixture();
    expect(bitsOf(DYNAMIC_MAP)).toEqual(fixture.bits);
    expect(DYNAMIC_MAP[ZERO_CODE]).toBe(0);
    expect(DYNAMIC_MAP[255]).toBe(1);
    for (let i = 1; i < 256; i++) expect(DYNAMIC_MAP[i]!).toBeGreaterThan(DYNAMIC_MAP[i - 1]!);
  });

  it('quantizeCode picks the nearest value by f32 midpoints', () => {
    for (let c = 0; c < 256; c++) expect(quantizeCode(DYNAMIC_MAP[c]!)).toBe(c);
    for (let c = 0; c < 255; c++) {
      const mid = Math.fround((DYNAMIC_MAP[c]! + DYNAMIC_MAP[c + 1]!) * 0.5);
      const below = new Float32Array([mid]);
      const above = new Float32Array([mid]);
      new Uint32Array(below.buffer)[0]! -= mid > 0 ? 1 : -1; // one f32 step towards -inf... and +inf
      new Uint32Array(above.buffer)[0]! += mid > 0 ? 1 : -1;
      expect(quantizeCode(below[0]!), `just below the midpoint of ${c} and ${c + 1}`).toBe(c);
      expect(quantizeCode(above[0]!), `just above the midpoint of ${c} and ${c + 1}`).toBe(c + 1);
    }
    expect(quantizeCode(2)).toBe(255);
    expect(quantizeCode(-2)).toBe(0);
  });

  it('quantize then dequantize keeps each block\'s largest value exactly and zero blocks at zero code', () => {
    const v = new Float32Array(600);
    for (let i = 0; i < v.length; i++) v[i] = Math.fround(((i * 7919) % 1000) / 1000) * (i < 256 ? 1e-3 : i < 512 ? 0 : 30);
    const q = quantizeBlockwise(v);
    expect(q.absmax.length).toBe(3);
    expect(q.absmax[1]).toBe(0);
    expect(Array.from(q.codes.subarray(256, 512)).every((c) => c === ZERO_CODE)).toBe(true);
    expect(Array.from(q.codes.subarray(600)).every((c) => c === ZERO_CODE)).toBe(true); // padding
    const back = dequantizeBlockwise(q);
    for (let b = 0; b < 3; b++) {
      const block = v.subarray(b * 256, Math.min((b + 1) * 256, 600));
      const max = Math.max(...block);
      expect(q.absmax[b]).toBe(max);
      expect(back[block.indexOf(max) + b * 256]).toBe(max);
    }
    // Within half the gap to the neighbouring map value, relative to the absmax.
    for (let i = 0; i < v.length; i++) {
      const c = q.codes[i]!, scale = q.absmax[Math.floor(i / 256)]!;
      const gap = Math.max(DYNAMIC_MAP[Math.min(c + 1, 255)]! - DYNAMIC_MAP[c]!, DYNAMIC_MAP[c]! - DYNAMIC_MAP[Math.max(c - 1, 0)]!);
      expect(Math.abs(back[i]! - v[i]!)).toBeLessThanOrEqual((gap / 2) * scale * (1 + 1e-6));
    }
  });
});

describe.each(BLOCKWISE8_CASES)('fixture %s (PyTorch 1.13)', (name) => {
  const c = loadBlockwise8Case(name);

  it('the CPU twin matches every snapshot bit for bit', () => {
    const inputs = caseInputs(c);
    inputs.params.forEach((p, t) => expect(bitsOf(p), `tensor ${t}'s starting values`).toEqual(bitsOf(c.start[t]!)));
    const options = resolveOptions(c.options);
    const states: (Blockwise8State | ReferenceState)[] = c.sizes.map((size) => size >= MIN_8BIT_SIZE
      ? createBlockwise8State(size, options)
      : createReferenceState(size, { ...options, stateDtype: 'f32' }));
    let checked = 0;
    for (let step = 1; step <= c.steps; step++) {
      const grads = inputs.grads(step);
      c.sizes.forEach((_, t) => {
        const s = states[t]!;
        if ('codes' in s) blockwise8Step(inputs.params[t]!, grads[t]!, s, options);
        else referenceStep(inputs.params[t]!, grads[t]!, s, { ...options, stateDtype: 'f32' });
      });
      const snapshot = c.snapshots.get(step);
      if (!snapshot) continue;
      snapshot.forEach((want, t) => {
        const what = `${name}, step ${step}, tensor ${t} (${want.size} elements)`;
        expect(bitsOf(inputs.params[t]!), `${what}: parameters`).toEqual(bitsOf(want.param));
        const s = states[t]!;
        if ('codes' in s) {
          expect(Array.from(s.codes.subarray(0, want.size)), `${what}: codes`).toEqual(Array.from(want.codes!));
          expect(bitsOf(s.absmax), `${what}: absmax`).toEqual(bitsOf(want.absmax!));
          expect(Array.from(s.codes.subarray(want.size)).every((x) => x === ZERO_CODE), `${what}: padding`).toBe(true);
        } else {
          expect(bitsOf(s.squareAvg), `${what}: f32 state`).toEqual(bitsOf(want.squareAvg!));
        }
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(0);
  });
});

describe('the shader\'s quantizer (quantizeCodeBuckets) against the binary search', () => {
  // test/fixtures/blockwise8-exhaustive.ts checks every f32 in [-1, 1]; these are the cases that matter.
  const bits = new Uint32Array(1), value = new Float32Array(bits.buffer);
  const agree = (b: number) => {
    bits[0] = b >>> 0;
    const x = value[0]!;
    const expected = quantizeCode(x);
    if (quantizeCodeBuckets(b >>> 0) !== expected) {
      expect(quantizeCodeBuckets(b >>> 0), `x = ${x} (0x${(b >>> 0).toString(16)})`).toBe(expected);
    }
    return 1;
  };

  it('agrees at every map value and every midpoint, +-1 and +-2 ULP, both signs', () => {
    let checked = 0;
    const mapBits = new Uint32Array(DYNAMIC_MAP.buffer), midBits = new Uint32Array(DYNAMIC_MIDPOINTS.buffer);
    for (let c = 0; c < 256; c++) {
      for (const b of [mapBits[c]!, c < 255 ? midBits[c]! : 0x3f800000]) {
        for (let d = -2; d <= 2; d++) {
          if (b + d >= 0) checked += agree(b + d) + agree((b + d) | 0x80000000); // magnitude +-ULP, both signs
        }
      }
    }
    for (const x of [0, 0x80000000, 0x3f800000, 0xbf800000, 1, 0x80000001, 0x00800000, 0x7f800000, 0xff800000]) {
      checked += agree(x);
    }
    expect(checked).toBe(256 * 2 * 5 * 2 - 2 * 2 + 9); // +0 - 1 and +0 - 2 ULP are not magnitudes
  });

  it('agrees at every bucket edge and on a dense random sample of [-1, 1]', () => {
    let checked = 0;
    for (let b = BUCKET_LOW; b <= BUCKET_HIGH + 1; b++) {
      for (const d of [-1, 0, 1]) checked += agree((b << 17) + d) + agree(((b << 17) + d) | 0x80000000);
    }
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
    for (let i = 0; i < 2_000_000; i++) {
      const b = next() % 0x3f800001; // any f32 bit pattern in [0, 1], then either sign
      checked += agree(next() & 1 ? b | 0x80000000 : b);
    }
    expect(checked).toBe((BUCKET_HIGH - BUCKET_LOW + 2) * 6 + 2_000_000);
  });

  it('each bucket holds at most one midpoint, so its code or the next', () => {
    for (let b = 0; b < BUCKET_CODES.length - 1; b++) {
      expect(BUCKET_CODES[b + 1]! - BUCKET_CODES[b]!, `bucket ${b}`).toBeLessThanOrEqual(1);
    }
    expect(BUCKET_CODES[0]).toBe(ZERO_CODE);
    expect(BUCKET_CODES[BUCKET_CODES.length - 1]).toBe(255);
  });

  it('the shader\'s bucket constants and table size are the twin\'s', () => {
    const source = readFileSync(new URL('../../shaders/rmsprop.wgsl', import.meta.url), 'utf8');
    expect(Number(/const BUCKET_LOW: u32 = (\d+)u;/.exec(source)?.[1])).toBe(BUCKET_LOW);
    expect(Number(/const BUCKET_HIGH: u32 = (\d+)u;/.exec(source)?.[1])).toBe(BUCKET_HIGH);
    const buckets = Number(/const BUCKETS: u32 = (\d+)u;/.exec(source)?.[1]);
    expect(buckets).toBe(BUCKET_CODES.length);
    const tables = quantizerTables();
    expect(tables.length).toBe(256 + 2 * buckets);
    expect([...tables.subarray(0, 256)]).toEqual([...new Uint32Array(DYNAMIC_MAP.buffer, DYNAMIC_MAP.byteOffset, 256)]);
    for (let b = 0; b < buckets; b++) {
      expect(tables[256 + 2 * b], `bucket ${b}: its code`).toBe(BUCKET_CODES[b]);
      expect(tables[257 + 2 * b], `bucket ${b}: its threshold`).toBe(BUCKET_THRESHOLD_BITS[b]);
    }
  });

  it('each bucket\'s threshold: |x| above it is |x| past the midpoint, a tie going to the even code', () => {
    const bits = new Uint32Array(1), value = new Float32Array(bits.buffer);
    BUCKET_CODES.forEach((c0, b) => {
      const t = BUCKET_THRESHOLD_BITS[b]!;
      const mid = DYNAMIC_MIDPOINTS[c0]!;
      bits[0] = t;
      const threshold = value[0]!;
      bits[0] = t + 1;
      const above = value[0]!;
      // The threshold is the last value that keeps c0, the next f32 the first that takes c0 + 1.
      if (c0 % 2 === 0) {
        expect(threshold, `bucket ${b} (code ${c0}, even): the midpoint itself`).toBe(mid);
      } else {
        expect(threshold < mid && above === mid, `bucket ${b} (code ${c0}, odd): the f32 below the midpoint`).toBe(true);
      }
    });
  });
});

describe('one block size', () => {
  it('the shader\'s BLOCK_VEC4S is BLOCK_SIZE / 4; ZERO_CODE and the blocks per workgroup the same', () => {
    const source = readFileSync(new URL('../../shaders/rmsprop.wgsl', import.meta.url), 'utf8');
    expect(Number(/const BLOCK_VEC4S: u32 = (\d+)u;/.exec(source)?.[1])).toBe(BLOCK_SIZE / 4);
    expect(Number(/const ZERO_CODE: u32 = (\d+)u;/.exec(source)?.[1])).toBe(ZERO_CODE);
    expect(Number(/const BLOCKS_PER_WORKGROUP: u32 = (\d+)u;/.exec(source)?.[1])).toBe(BLOCKS_PER_WORKGROUP.workgroup);
    expect(Number(/const LANE_BLOCKS_PER_WORKGROUP: u32 = (\d+)u;/.exec(source)?.[1])).toBe(BLOCKS_PER_WORKGROUP.lanes);
    // 'workgroup': 64 invocations a block; 'lanes': one.
    expect(Number(/@compute @workgroup_size\(BLOCK_VEC4S \* BLOCKS_PER_WORKGROUP\)\nfn stepBlockwise8\(/.test(source))).toBe(1);
    expect(Number(/@compute @workgroup_size\(LANE_BLOCKS_PER_WORKGROUP\)\nfn stepBlockwise8Lanes\(/.test(source))).toBe(1);
  });
});

describe('the 8-bit step\'s layout per adapter', () => {
  const adapter = (info: GPUAdapterInfo | Record<string, unknown>) => ({ adapterInfo: info as GPUAdapterInfo });
  it.each([
    [{ vendor: 'google', architecture: 'swiftshader', description: 'SwiftShader driver' }, 'lanes'],
    [{ vendor: 'mesa', architecture: '', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }, 'lanes'],
    [{ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100 80GB HBM3' }, 'workgroup'],
    [{ vendor: '', architecture: '', description: '' }, 'workgroup'], // Firefox on a GPU: no names
    [{ vendor: '', architecture: '', description: '', isFallbackAdapter: true }, 'lanes'], // Firefox on lavapipe
  ])('%j: %s', (info, layout) => {
    expect(blockwise8Layout(adapter(info))).toBe(layout);
  });
  it('no adapter info: a GPU\'s; forced for one device, then back', () => {
    const device = {};
    expect(blockwise8Layout(device)).toBe('workgroup');
    forceBlockwise8Layout(device, 'lanes');
    expect(blockwise8Layout(device)).toBe('lanes');
    expect(blockwise8Layout({})).toBe('workgroup');
    forceBlockwise8Layout(device, undefined);
    expect(blockwise8Layout(device)).toBe('workgroup');
  });
});

describe('8-bit state refusals', () => {
  it.each([
    [{ centered: true }, /centered/],
    [{ momentum: 0.9 }, /momentum > 0/],
    [{ gradDtype: 'f16' as const }, /gradDtype 'f16'/],
    [{ paramDtype: 'bf16' as const }, /paramDtype 'bf16'/],
  ])('refuses %o with a RangeError naming stateDtype', (extra, message) => {
    expect(() => resolveOptions({ stateDtype: 'int8-blockwise', ...extra })).toThrow(RangeError);
    expect(() => resolveOptions({ stateDtype: 'int8-blockwise', ...extra })).toThrow(/stateDtype 'int8-blockwise'/);
    expect(() => resolveOptions({ stateDtype: 'int8-blockwise', ...extra })).toThrow(message);
  });

  it('refuses an unknown stateDtype', () => {
    expect(() => resolveOptions({ stateDtype: 'int8' as never })).toThrow(/stateDtype must be 'f32' or 'int8-blockwise'/);
  });

  it('a NaN gradient poisons its block alone (absmax NaN, zero codes), and such a state loads back', async () => {
    const p = new Float32Array(4096).fill(0.5), g = new Float32Array(4096).fill(0.1);
    g[300] = NaN;
    const opt = new ReferenceRMSProp([{ param: p, grad: g, name: 'w' }], { stateDtype: 'int8-blockwise' });
    opt.step();
    const s = await opt.stateDict();
    expect(Number.isNaN(s.tensors[0]!.absmax![1]!)).toBe(true);
    expect(Array.from(s.tensors[0]!.codes!.subarray(256, 512)).every((c) => c === ZERO_CODE)).toBe(true);
    expect(s.tensors[0]!.absmax![0]).toBeGreaterThan(0); // the other blocks as usual
    opt.loadStateDict(s);
    expect(await opt.stateDict()).toEqual(s);
  });

  it('starts at initialScale exactly', () => {
    const s = createBlockwise8State(4100, { initialScale: 1 });
    expect(Array.from(dequantizeBlockwise(s)).every((x) => x === 1)).toBe(true);
    expect(s.absmax.length).toBe(Math.ceil(4100 / BLOCK_SIZE));
  });
});

describe('ReferenceRMSProp with 8-bit state', () => {
  const c = loadBlockwise8Case('default');

  it('replays the fixture, and its state dict carries the codes and absmax exactly', async () => {
    const inputs = caseInputs(c);
    const grads = c.sizes.map((size) => new Float32Array(size));
    const opt = new ReferenceRMSProp(inputs.params.map((param, i) => ({ param, grad: grads[i]! })), c.options);
    for (let step = 1; step <= c.steps; step++) {
      inputs.grads(step).forEach((g, i) => grads[i]!.set(g));
      opt.step();
    }
    const want = c.snapshots.get(c.steps)!;
    const state = await opt.stateDict();
    want.forEach((w, t) => {
      expect(bitsOf(inputs.params[t]!)).toEqual(bitsOf(w.param));
      const s = state.tensors[t]!;
      if (w.codes) {
        expect(Array.from(s.codes!)).toEqual(Array.from(w.codes));
        expect(bitsOf(s.absmax!)).toEqual(bitsOf(w.absmax!));
        expect(s.squareAvg.length).toBe(w.size);
      } else {
        expect(s.codes).toBeUndefined();
        expect(bitsOf(s.squareAvg)).toEqual(bitsOf(w.squareAvg!));
      }
    });
  });

  it('resumes bit for bit from a state dict, and refuses f32 state until converted', async () => {
    const make = (stateDtype: 'f32' | 'int8-blockwise') => {
      const inputs = caseInputs(c);
      const grads = c.sizes.map((size) => new Float32Array(size));
      const opt = new ReferenceRMSProp(inputs.params.map((param, i) => ({ param, grad: grads[i]! })),
        { ...c.options, stateDtype });
      return { inputs, grads, opt };
    };
    const a = make('int8-blockwise');
    for (let step = 1; step <= 4; step++) {
      a.inputs.grads(step).forEach((g, i) => a.grads[i]!.set(g));
      a.opt.step();
    }
    const saved = await a.opt.stateDict();
    const b = make('int8-blockwise');
    b.inputs.params.forEach((p, i) => p.set(a.inputs.params[i]!));
    b.opt.loadStateDict(saved);
    const more = caseInputs(c);
    for (let step = 1; step <= 5; step++) more.grads(step); // draws past the start
    for (let k = 0; k < 3; k++) {
      const g = more.grads(5 + k);
      for (const x of [a, b]) { g.forEach((gi, i) => x.grads[i]!.set(gi)); x.opt.step(); }
    }
    a.inputs.params.forEach((p, i) => expect(bitsOf(b.inputs.params[i]!)).toEqual(bitsOf(p)));
    expect(await b.opt.stateDict()).toEqual(await a.opt.stateDict());

    // f32 state into an 8-bit optimizer: refused, nothing changed; converted: loaded.
    const f = make('f32');
    const f32State = await f.opt.stateDict();
    const before = await b.opt.stateDict();
    expect(() => b.opt.loadStateDict(f32State)).toThrow(/stateDtype/);
    expect(await b.opt.stateDict()).toEqual(before);
    const converted = convertStateDict(f32State, 'int8-blockwise');
    b.opt.loadStateDict(converted);
    expect(await b.opt.stateDict()).toEqual(converted);
    // A changed squareAvg without its codes: refused.
    const tampered = convertStateDict(saved, 'int8-blockwise');
    tampered.tensors[0]!.squareAvg[5] = 123;
    expect(() => b.opt.loadStateDict(tampered)).toThrow(/squareAvg is not the value of its codes/);
    // And back to f32: the dequantized values, exactly.
    const back = convertStateDict(saved, 'f32');
    expect(back.tensors[0]!.codes).toBeUndefined();
    expect(bitsOf(back.tensors[0]!.squareAvg)).toEqual(bitsOf(saved.tensors[0]!.squareAvg));
    const g = make('f32');
    g.opt.loadStateDict(back);
  });
});

describe('8-bit state in safetensors checkpoints', () => {
  async function trainedState() {
    const c = loadBlockwise8Case('default');
    const inputs = caseInputs(c);
    const grads = c.sizes.map((size) => new Float32Array(size));
    const opt = new ReferenceRMSProp(inputs.params.map((param, i) => ({ param, grad: grads[i]!, name: `layer${i}.w` })), c.options);
    for (let step = 1; step <= 3; step++) {
      inputs.grads(step).forEach((g, i) => grads[i]!.set(g));
      opt.step();
    }
    return { opt, state: await opt.stateDict(), params: await opt.readParams() };
  }

  it('stores codes as U8 and absmax as F32, reads them back exactly, and resumes', async () => {
    const { state, params } = await trainedState();
    const bytes = stateDictToSafetensors(state, { params });
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    expect(header['layer0.w.square_avg_codes']).toMatchObject({ dtype: 'U8', shape: [4096] });
    expect(header['layer0.w.square_avg_absmax']).toMatchObject({ dtype: 'F32', shape: [16] });
    expect(header['layer0.w.square_avg']).toBeUndefined();
    expect(header['layer2.w.square_avg']).toMatchObject({ dtype: 'F32', shape: [1000] }); // under 4096: f32
    // About 1.02 bytes per 8-bit element: codes plus an absmax per 256.
    const f32Bytes = stateDictToSafetensors(convertStateDict(state, 'f32')).length;
    expect(bytes.length - params.reduce((n, p) => n + p.byteLength, 0)).toBeLessThan(f32Bytes * 0.4);
    const back = safetensorsToStateDict(bytes);
    expect(back).toEqual(state);
    expect(safetensorsToParams(bytes).map(bitsOf)).toEqual(params.map(bitsOf));
  });

  const hasPython = spawnSync('python3', ['--version'], { encoding: 'utf8' }).status === 0;
  it.skipIf(!hasPython)('test/fixtures/read_safetensors.py reads the codes (U8) and absmax bit for bit', async () => {
    const { state } = await trainedState();
    const bytes = stateDictToSafetensors(state);
    const dir = mkdtempSync(join(tmpdir(), 'rmsprop-blockwise8-'));
    try {
      const path = join(dir, 'checkpoint.safetensors');
      writeFileSync(path, bytes);
      const run = spawnSync('python3', [join(import.meta.dirname, '../fixtures/read_safetensors.py'), path], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      const out = JSON.parse(run.stdout) as { readers: string[]; tensors: Record<string, Record<string, number[]>> };
      const t = state.tensors[0]!;
      for (const reader of out.readers) {
        expect(out.tensors['layer0.w.square_avg_codes']![reader], reader).toEqual(Array.from(t.codes!));
        expect(out.tensors['layer0.w.square_avg_absmax']![reader], reader).toEqual(Array.from(bitsOf(t.absmax!)));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
