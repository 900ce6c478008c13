/** The dispatch arithmetic of src/gpu/plan.ts at its edges. */
import { describe, expect, it } from 'vitest';
import { dispatchSize, maxChunkElements, planChunks, stateSlots, WORKGROUP_SIZE, type Chunk } from '../../src/gpu/plan.js';

/** Every invariant a chunk list must satisfy for a tensor of `size` elements. */
function checkChunks(chunks: Chunk[], size: number, maxChunk: number): void {
  let next = 0;
  for (const c of chunks) {
    expect(c.first).toBe(next); // contiguous, in order, no gaps
    expect(c.count).toBeGreaterThan(0);
    expect(c.count).toBeLessThanOrEqual(maxChunk);
    expect((c.first * 4) % 256).toBe(0); // each chunk's bindings start at an aligned offset
    expect(c.count4 * 4 + c.tailCount).toBe(c.count);
    expect(c.tailCount).toBeGreaterThanOrEqual(0);
    expect(c.tailCount).toBeLessThanOrEqual(3);
    expect(c.slotStride).toBe(c.count4 + (c.tailCount > 0 ? 1 : 0));
    // The tail binding starts at an aligned offset at or below the body's end and the first tail
    // element sits at tailStart within it: both name element count4 * 4 of the chunk.
    expect(c.tailBindingOffset % 256).toBe(0);
    expect(c.tailBindingOffset).toBeLessThanOrEqual(c.count4 * 16);
    expect(c.tailBindingOffset / 4 + c.tailStart).toBe(c.count4 * 4);
    expect(Number.isInteger(c.tailStart)).toBe(true);
    expect(c.tailStart).toBeLessThan(64); // within one 256-byte block
    next += c.count;
  }
  expect(next).toBe(size);
  // Every chunk but the last is full.
  chunks.slice(0, -1).forEach((c) => expect(c.count).toBe(maxChunk));
}

describe('stateSlots', () => {
  it('counts v, plus m when centered, plus b with momentum', () => {
    expect(stateSlots({ centered: false, momentum: 0 })).toBe(1);
    expect(stateSlots({ centered: true, momentum: 0 })).toBe(2);
    expect(stateSlots({ centered: false, momentum: 0.9 })).toBe(2);
    expect(stateSlots({ centered: true, momentum: 1e-9 })).toBe(3);
  });
});

describe('planChunks', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8, 9])('size %i: one chunk, body of floor(n/4) vec4s and a tail of n%%4', (n) => {
    const chunks = planChunks(n, 1 << 20);
    expect(chunks).toHaveLength(1);
    const c = chunks[0]!;
    expect(c).toEqual({
      first: 0, count: n, count4: Math.floor(n / 4), slotStride: Math.ceil(n / 4), tailCount: n % 4,
      tailBindingOffset: 0, tailStart: Math.floor(n / 4) * 4,
    });
    checkChunks(chunks, n, 1 << 20);
  });

  it('sizes 63, 64, 65: the tail binding moves to the next 256-byte block at 64 elements', () => {
    const [c63] = planChunks(63, 1 << 20), [c64] = planChunks(64, 1 << 20), [c65] = planChunks(65, 1 << 20);
    expect(c63).toMatchObject({ count4: 15, tailCount: 3, slotStride: 16, tailBindingOffset: 0, tailStart: 60 });
    expect(c64).toMatchObject({ count4: 16, tailCount: 0, slotStride: 16, tailBindingOffset: 256, tailStart: 0 });
    expect(c65).toMatchObject({ count4: 16, tailCount: 1, slotStride: 17, tailBindingOffset: 256, tailStart: 0 });
    for (const n of [63, 64, 65, 127, 128, 129, 1000, 4097]) checkChunks(planChunks(n, 1 << 20), n, 1 << 20);
  });

  it('a limit that forces several chunks puts the remainder, with its tail, in the last', () => {
    const maxChunk = 256; // elements: 1 KiB bindings
    const size = 3 * 256 + 70 + 3; // three full chunks, then 73 = 18 vec4s + a tail of 1
    const chunks = planChunks(size, maxChunk);
    expect(chunks.map((c) => c.first)).toEqual([0, 256, 512, 768]);
    expect(chunks.slice(0, 3).every((c) => c.count === 256 && c.tailCount === 0 && c.slotStride === 64)).toBe(true);
    expect(chunks[3]).toEqual({ first: 768, count: 73, count4: 18, slotStride: 19, tailCount: 1, tailBindingOffset: 256, tailStart: 8 });
    checkChunks(chunks, size, maxChunk);
  });

  it('an exact multiple of the limit has no partial chunk', () => {
    const chunks = planChunks(4 * 128, 128);
    expect(chunks).toHaveLength(4);
    checkChunks(chunks, 512, 128);
  });

  it('keeps every invariant over many sizes and limits', () => {
    for (const maxChunk of [64, 128, 192, 1024]) {
      for (let size = 1; size <= 700; size += 7) checkChunks(planChunks(size, maxChunk), size, maxChunk);
    }
  });
});

describe('maxChunkElements', () => {
  it('is a multiple of 64 elements whose widest binding (the state) fits the smaller limit', () => {
    for (const [binding, buffer] of [[128 << 20, 256 << 20], [2 ** 31 - 4, 2 ** 30], [1000, 1 << 20], [4096, 4096]] as const) {
      for (const slots of [1, 2, 3]) {
        const n = maxChunkElements(binding, buffer, slots);
        expect(n % 64).toBe(0);
        expect(n * 4 * slots).toBeLessThanOrEqual(Math.min(binding, buffer));
        expect((n + 64) * 4 * slots).toBeGreaterThan(Math.min(binding, buffer)); // the largest such
        // The state of every chunk of a tensor cut at n fits, tail included.
        for (const c of planChunks(3 * n + 5, n)) expect(c.slotStride * 16 * slots).toBeLessThanOrEqual(Math.min(binding, buffer));
      }
    }
  });

  it('WebGPU default limits: 128 MiB bindings give 32 Mi elements with one slot, a third with three', () => {
    expect(maxChunkElements(128 << 20, 256 << 20, 1)).toBe(32 << 20);
    expect(maxChunkElements(128 << 20, 256 << 20, 3)).toBe(Math.floor((128 << 20) / 12 / 64) * 64);
  });

  it('throws a RangeError when not even 64 elements fit', () => {
    expect(() => maxChunkElements(255, 1 << 20, 1)).toThrow(RangeError);
    expect(() => maxChunkElements(1 << 20, 767, 3)).toThrow(/too small/);
    expect(maxChunkElements(768, 768, 3)).toBe(64);
  });
});

describe('dispatchSize', () => {
  const MAX = 65535;

  it('is 1-D while it fits: one workgroup per WORKGROUP_SIZE invocations, rounded up', () => {
    expect(WORKGROUP_SIZE).toBe(256);
    expect(dispatchSize(1, MAX)).toEqual([1, 1]);
    expect(dispatchSize(256, MAX)).toEqual([1, 1]);
    expect(dispatchSize(257, MAX)).toEqual([2, 1]);
    expect(dispatchSize(MAX * 256, MAX)).toEqual([MAX, 1]);
  });

  it('goes 2-D above 65535 workgroups, no dimension over the limit, covering every invocation', () => {
    expect(dispatchSize(MAX * 256 + 1, MAX)).toEqual([32768, 2]);
    for (const n of [MAX * 256 + 1, MAX * 512, MAX * 512 + 1, 2 ** 31, 1e9, MAX * MAX * 256]) {
      const [x, y] = dispatchSize(n, MAX);
      expect(y).toBeGreaterThan(1);
      expect(x).toBeLessThanOrEqual(MAX);
      expect(y).toBeLessThanOrEqual(MAX);
      const groups = Math.ceil(n / 256);
      expect(x * y).toBeGreaterThanOrEqual(groups);
      expect(x * y - groups).toBeLessThan(y); // the excess (guarded in the shader) is under one workgroup per row
    }
  });

  it('throws past a max² grid', () => {
    expect(() => dispatchSize(MAX * MAX * 256 + 1, MAX)).toThrow(RangeError);
    expect(() => dispatchSize(4 * 4 * 256 + 1, 4)).toThrow(/4² grid/);
    expect(dispatchSize(4 * 4 * 256, 4)).toEqual([4, 4]);
  });
});
