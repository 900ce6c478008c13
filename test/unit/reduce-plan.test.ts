/** The pre-pass's blocks and runs (src/gpu/reduce-plan.ts) at their edges, and the twin following them. */
import { describe, expect, it } from 'vitest';
import { planSegments } from '../../src/gpu/plan.js';
import type { ResolvedParam } from '../../src/gpu/params.js';
import {
  planReduce,
  reduceLaneVec4s,
  REDUCE_WORKGROUP_SIZE,
  REDUCE_TARGET_PARTIALS,
  reduceTargetPartials,
  type ReducePlan,
} from '../../src/gpu/reduce-plan.js';
import { gradNormStats } from '../../src/rule/reference.js';

const WIDE = { maxBindingBytes: 1 << 30, maxBlocksPerRun: 65535 * 65535 };

/** A stand-in for a GPUBuffer: the plan only reads sizes and compares identities. */
const buffer = (size: number) => ({ size, label: 'fake' }) as unknown as GPUBuffer;

/** Lone tensors, each in buffers of its own, f32 (4) or 16-bit (2) gradients. */
function lone(sizes: readonly number[], bytes: 2 | 4 = 4): ResolvedParam[] {
  return sizes.map((size, index) => ({
    name: `t${index}`, index, group: 0, size,
    param: { buffer: buffer(size * 4), offset: 0, size: size * 4 },
    grad: { buffer: buffer(size * bytes), offset: 0, size: size * bytes },
  }));
}

/** Tensors of one arena: 256-byte aligned offsets in one pair of buffers, as ParamArena lays them out. */
function arena(sizes: readonly number[]): ResolvedParam[] {
  const tag = {};
  let at = 0;
  const offsets = sizes.map((n) => { const o = at; at = Math.ceil((o + n * 4) / 256) * 256; return o; });
  const params = buffer(at), grads = buffer(at);
  return sizes.map((size, index) => ({
    name: `a${index}`, index, group: 0, size, arena: tag,
    param: { buffer: params, offset: offsets[index]!, size: size * 4 },
    grad: { buffer: grads, offset: offsets[index]!, size: size * 4 },
  }));
}

/** The invariants of any plan: whole blocks, partials numbered in order, aligned bindings. */
function checkPlan(plan: ReducePlan, sizes: readonly number[], bytes = 4): void {
  const blockVec4s = REDUCE_WORKGROUP_SIZE * plan.laneVec4s;
  const blocks = plan.runs.flatMap((r) => r.blocks);
  expect(blocks.map((b) => b.partial)).toEqual(blocks.map((_, i) => i));
  const perTensor = sizes.map((n) => Math.ceil(Math.ceil(n / 4) / blockVec4s));
  expect(plan.partialCount).toBe(perTensor.reduce((a, b) => a + b, 0));
  for (const run of plan.runs) {
    if (run.body) expect(run.body.offset % 256).toBe(0);
    if (run.tail) expect(run.tail.offset % 256).toBe(0);
    for (const b of run.blocks) {
      expect(b.count4 + (b.tailCount > 0 ? 1 : 0)).toBeLessThanOrEqual(blockVec4s);
      expect(b.tailCount).toBeLessThanOrEqual(3);
      if (b.count4 > 0) expect((b.first4 + b.count4) * 4 * bytes).toBeLessThanOrEqual(run.body!.size);
    }
  }
}

describe('reduceLaneVec4s', () => {
  for (const [kind, target] of Object.entries(REDUCE_TARGET_PARTIALS)) {
    it(`${kind}: 1 up to ${target} blocks of 1024 elements, then grows with the model`, () => {
      const limit = target * REDUCE_WORKGROUP_SIZE * 4;
      expect(reduceLaneVec4s([1], target)).toBe(1);
      expect(reduceLaneVec4s([limit], target)).toBe(1);
      expect(reduceLaneVec4s([limit, 1], target)).toBe(2);
      expect(reduceLaneVec4s([4_200_000], target)).toBe(Math.ceil(1_050_000 / (256 * target)));
      // Tensors count in vec4s each: 3 elements are one vec4.
      expect(reduceLaneVec4s(Array.from({ length: 4 * target * REDUCE_WORKGROUP_SIZE }, () => 3), target)).toBe(4);
    });
  }
  it('the twin\'s default is the GPU\'s target: 4.2M elements are 2 vec4s a lane on a GPU, 65 on a CPU adapter', () => {
    expect(reduceLaneVec4s([4_200_000])).toBe(2);
    expect(reduceLaneVec4s([4_200_000], REDUCE_TARGET_PARTIALS.cpu)).toBe(65);
  });
});

describe('reduceTargetPartials', () => {
  it('a CPU adapter (fallback, SwiftShader, llvmpipe) aims at fewer partials than a GPU', () => {
    const info = (o: object) => ({ adapterInfo: { vendor: '', architecture: '', device: '', description: '', ...o } });
    expect(reduceTargetPartials(info({ isFallbackAdapter: true }))).toBe(REDUCE_TARGET_PARTIALS.cpu);
    expect(reduceTargetPartials(info({ architecture: 'swiftshader' }))).toBe(REDUCE_TARGET_PARTIALS.cpu);
    expect(reduceTargetPartials(info({ description: 'llvmpipe (LLVM 15.0.6)' }))).toBe(REDUCE_TARGET_PARTIALS.cpu);
    expect(reduceTargetPartials(info({ vendor: 'nvidia', architecture: 'hopper' }))).toBe(REDUCE_TARGET_PARTIALS.gpu);
    expect(reduceTargetPartials({})).toBe(REDUCE_TARGET_PARTIALS.gpu);
  });
});

describe('planReduce', () => {
  it('a lone tensor: whole blocks, the tail read from its own binding at an aligned offset', () => {
    const params = lone([1031]);
    const plan = planReduce(planSegments(params), [4], WIDE);
    checkPlan(plan, [1031]);
    expect(plan.runs).toHaveLength(1);
    const [run] = plan.runs;
    // 257 body vec4s then the 3-element tail as the 258th: a full block of 256, then 1 and the tail.
    expect(run!.blocks).toEqual([
      { first4: 0, count4: 256, tailCount: 0, partial: 0 },
      { first4: 256, count4: 1, tailCount: 3, partial: 1 },
    ]);
    expect(run!.body).toEqual({ buffer: params[0]!.grad.buffer, offset: 0, size: 257 * 16 });
    // Element 1028 (byte 4112) from the aligned offset 4096: element 4 of the tail binding.
    expect(run!.tail).toEqual({ buffer: params[0]!.grad.buffer, offset: 4096, size: 4124 - 4096 });
    expect(run!.tailStart).toBe(4);
  });

  it('1 to 3 elements: no body binding, the tail alone', () => {
    const plan = planReduce(planSegments(lone([3])), [4], WIDE);
    expect(plan.runs[0]!.body).toBeUndefined();
    expect(plan.runs[0]!.blocks).toEqual([{ first4: 0, count4: 0, tailCount: 3, partial: 0 }]);
  });

  it('a body of exactly one block and a tail: the tail is a block of its own', () => {
    const n = REDUCE_WORKGROUP_SIZE * 4 + 2;
    const plan = planReduce(planSegments(lone([n])), [4], WIDE);
    expect(plan.runs[0]!.blocks).toEqual([
      { first4: 0, count4: 256, tailCount: 0, partial: 0 },
      { first4: 256, count4: 0, tailCount: 2, partial: 1 },
    ]);
  });

  it('16-bit gradients: vec2u words, the tail\'s first word', () => {
    const plan = planReduce(planSegments(lone([5], 2)), [2], WIDE);
    const [run] = plan.runs;
    expect(run!.blocks).toEqual([{ first4: 0, count4: 1, tailCount: 1, partial: 0 }]);
    expect(run!.body!.size).toBe(8);
    expect(run!.tailStart).toBe(2); // element 4 is byte 8: word 2
    expect(run!.tail!.size).toBe(12); // through the word the odd last element shares
  });

  it('an arena is one run: blocks per tensor, tails read through the zero padding', () => {
    const sizes = [1000, 3, 4099, 64, 5, 1];
    const params = arena(sizes);
    const segments = planSegments(params);
    expect(segments).toHaveLength(1);
    const plan = planReduce(segments, [4], WIDE);
    checkPlan(plan, sizes);
    expect(plan.runs).toHaveLength(1);
    expect(plan.runs[0]!.tail).toBeUndefined();
    const blocks = plan.runs[0]!.blocks;
    expect(blocks.every((b) => b.tailCount === 0)).toBe(true);
    // Each tensor starts a block at its own 256-byte aligned offset (bytes 0, 4096, 4352, 20992, 21248,
    // 21504); 4099 elements are 1025 vec4s: four blocks of 256 and one of the last, padded vec4.
    expect(blocks.map((b) => [b.first4, b.count4])).toEqual([
      [0, 250], [256, 1], [272, 256], [528, 256], [784, 256], [1040, 256], [1296, 1], [1312, 16], [1328, 2], [1344, 1],
    ]);
  });

  it('runs are cut at block boundaries to fit the binding limit, at aligned offsets, partials in order', () => {
    const sizes = [3 * 1024 + 5, 2000, 7];
    const params = lone(sizes);
    const plan = planReduce(
      planSegments(params),
      [4, 4, 4],
      { maxBindingBytes: 2 * 4096, maxBlocksPerRun: 65535 ** 2 },
    );
    checkPlan(plan, sizes);
    // The first tensor: 4 blocks (the last with the tail), at most two blocks (8 KiB) per run.
    expect(plan.runs.filter((r) => r.segment === 0).map((r) => r.blocks.length)).toEqual([2, 2]);
    expect(plan.runs[1]!.body!.offset).toBe(2 * 4096);
    expect(plan.runs[1]!.tail).toBeDefined();
    expect(plan.runs[0]!.tail).toBeUndefined();
  });

  it('caps the blocks of a run at maxBlocksPerRun', () => {
    const plan = planReduce(planSegments(lone([10 * 1024])), [4], { maxBindingBytes: 1 << 30, maxBlocksPerRun: 4 });
    expect(plan.runs.map((r) => r.blocks.length)).toEqual([4, 4, 2]);
  });
});

describe('gradNormStats follows the blocks', () => {
  it('an arena\'s padding and a lone tensor\'s tail give the same sum', () => {
    // Zero padding adds exact zeros in the same lanes: the norm of [g] equals the norm of g padded to vec4s.
    const g = Float32Array.from({ length: 4099 }, (_, i) => Math.sin(i) * 10 ** ((i % 7) - 3));
    const padded = new Float32Array(4100);
    padded.set(g);
    expect(gradNormStats([g], 0).norm).toBe(gradNormStats([padded], 0).norm);
  });

  it(
    'past 1Mi elements (laneVec4s 5, lanes adding five vec4s each) the norm stays within f32 rounding of the exact one',
    () => {
      const n = (1 << 20) + 4096;
      const g = Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
      let exact = 0;
      for (const x of g) exact += x * x;
      const { norm } = gradNormStats([g], 0);
      expect(Math.abs(norm - Math.sqrt(exact)) / Math.sqrt(exact)).toBeLessThan(1e-6);
    },
  );

  it('tests the values as given for NaN and ±Infinity, before the loss scale multiplies them', () => {
    // 3e38 is finite; multiplied by 10 (a loss scale of 0.1) it overflows, and the check must not see that.
    expect(gradNormStats([new Float32Array([1, 2, 3e38])], 0, 'fused', 10).nonFinite).toBe(false);
    expect(gradNormStats([new Float32Array([1, NaN])], 0, 'fused', 0.5).nonFinite).toBe(true);
  });
});
