/**
 * 8-bit blockwise state (stateDtype 'int8-blockwise'): the CPU twin (src/rule/blockwise8.ts) against
 * an independent implementation on PyTorch 1.13 (test/fixtures/make_blockwise8_fixtures.py): the map's
 * 256 values, and every code, absmax and parameter after the recorded steps, bit for bit.
 */
import { describe, expect, it } from 'vitest';
import {
  BLOCK_SIZE, blockwise8Step, createBlockwise8State, dequantizeBlockwise, DYNAMIC_MAP, MIN_8BIT_SIZE, quantizeBlockwise,
  quantizeCode, ZERO_CODE, type Blockwise8State,
} from '../../src/rule/blockwise8.js';
import { createReferenceState, referenceStep, type ReferenceState } from '../../src/rule/reference.js';
import { resolveOptions } from '../../src/rule/options.js';
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

  it('starts at initialScale exactly', () => {
    const s = createBlockwise8State(4100, { initialScale: 1 });
    expect(Array.from(dequantizeBlockwise(s)).every((x) => x === 1)).toBe(true);
    expect(s.absmax.length).toBe(Math.ceil(4100 / BLOCK_SIZE));
  });
});
