/**
 * 16-bit parameters (paramDtype 'f16' / 'bf16', two per u32) on the GPU against the CPU twin, at the
 * adapter's tolerance (bit for bit on SwiftShader and lavapipe; elsewhere within the WGSL bound of
 * the f32 update plus one 16-bit rounding): with and without the f32 master copy, with f32 and 16-bit gradients, odd
 * counts whose last word is half someone else's, values that overflow f16 and f16 subnormals; the
 * master copy in state dicts and checkpoints; bad layouts refused before any GPU work.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requestNodeDevice } from '../../demo/node/dawn.js';
import { maxChunkElements, packedChunkElements, planChunks, stateSlots } from '../../src/gpu/plan.js';
import { compareTensor, describeComparison } from '../../demo/check/compare.js';
import {
  decodeHalves, encodeHalves, f16ToF32, ParamArena, RMSProp, ReferenceRMSProp, safetensorsToStateDict, stateDictToSafetensors,
  type RMSPropConfig, type RMSPropState,
} from '../../src/index.js';
import {
  STORAGE_USAGE, cpuTwin, expectBitExact, expectClose, expectMatchesTwin, expectNormClose, gpuTest, randomGrads, randomParams, readBytes,
  rng, useDevice, withErrorScopes,
} from './harness.js';

const gpu = useDevice();

type Half = 'f16' | 'bf16';

/**
 * The bytes around the tensors: every half-word of the parameter buffer that is no tensor's must keep it.
 * A NaN with a payload in both f16 and bf16, so decoding and re-encoding it (which gives the canonical NaN) is caught too.
 */
const SENTINEL = 0xffc1;

/** Odd and even counts: tails of 1, 2, 3 and 0 elements, a lone element, a tail past a 256-byte binding offset. */
const SIZES = [5, 1030, 7, 1, 2051, 64];

/** Edge values: f16's largest finite values (a large lr pushes them past 65520, to Infinity), and its subnormals (a tiny lr keeps them there). */
function edgeValues(dtype: Half): { big: Float32Array; tiny: Float32Array } {
  return dtype === 'f16'
    ? { big: new Float32Array([65504, -65504, 65472, 65000, -65280, 60000, 1, 2]), tiny: new Float32Array([6e-5, 3e-5, 1e-7, -2e-6, 5.96e-8, 0, -0, 1e-5]) }
    // bf16 keeps f32's range: large and small normal values (bf16 subnormals are f32 subnormals, which a GPU may flush).
    : { big: new Float32Array([3e38, -3e38, 1e30, 65504, -65280, 60000, 1, 2]), tiny: new Float32Array([1e-30, 3e-35, 1e-37, -2e-36, 6e-8, 0, -0, 1e-5]) };
}

interface Tensor {
  readonly name: string;
  readonly n: number;
  /** Byte offset in the shared parameter buffer. */
  readonly offset: number;
  readonly gradOffset: number;
  readonly cpuParam: Uint16Array;
  readonly cpuGrad: Float32Array | Uint16Array;
  /** Fixed gradients (edge tensors), or fresh random ones each step. */
  readonly fixedGrads?: Float32Array;
}

const align256 = (x: number) => Math.ceil(x / 256) * 256;

/** The bytes of `values` as whole u32 words for writeBuffer: an odd count of 16-bit values gets SENTINEL after it. */
function wholeWords(values: Float32Array | Uint16Array): ArrayBuffer {
  const out = new Uint16Array(Math.ceil(values.byteLength / 4) * 2).fill(SENTINEL);
  out.set(new Uint16Array(values.buffer, values.byteOffset, values.byteLength / 2));
  return out.buffer;
}

/** The f32 value of a bfloat16 pattern. */
const bf16At = (b: number) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!;

/**
 * A GPU optimizer and its twin over 16-bit parameters, all in one parameter buffer at 256-byte
 * offsets, the rest of it filled with SENTINEL half-words (so an odd count's last word has a
 * neighbouring half that must stay as it was). Groups: the random tensors (`options`), then two
 * edge tensors with lr 4 ('big') and lr 1e-6 or 1e-32 ('tiny').
 */
function halfParamTwin(device: GPUDevice, paramDtype: Half, gradDtype: 'f32' | Half, options: RMSPropConfig, seed: number) {
  const random = rng(seed);
  const sizes = SIZES;
  const edges = edgeValues(paramDtype);
  const specs: { name: string; values: Float32Array; fixedGrads?: Float32Array; group: number }[] = [
    ...sizes.map((n, i) => ({ name: `t${i}`, values: randomParams(n, random), group: 0 })),
    { name: 'big', values: edges.big, fixedGrads: new Float32Array([-1, 1, -1, -0.5, 1, -1, 0.25, -2]), group: 1 },
    { name: 'tiny', values: edges.tiny, fixedGrads: new Float32Array([1, 1, -1, 0.5, -1, 1, -1, 2]), group: 2 },
  ];
  const gradBytes = gradDtype === 'f32' ? 4 : 2;
  let at = 0, gradAt = 0;
  const tensors: (Tensor & { group: number })[] = specs.map((s) => {
    const t = {
      name: s.name, n: s.values.length, offset: at, gradOffset: gradAt, group: s.group,
      cpuParam: encodeHalves(s.values, paramDtype),
      cpuGrad: gradDtype === 'f32' ? new Float32Array(s.values.length) : new Uint16Array(s.values.length),
      ...(s.fixedGrads ? { fixedGrads: s.fixedGrads } : {}),
    };
    at = align256(at + t.n * 2);
    gradAt = align256(gradAt + t.n * gradBytes);
    return t;
  });
  // The last tensor's word is whole, and one spare word after it (sentinel too).
  const paramBuffer = device.createBuffer({ label: 'test.halfParams', size: at + 4, usage: STORAGE_USAGE, mappedAtCreation: true });
  const mapped = new Uint16Array(paramBuffer.getMappedRange());
  mapped.fill(SENTINEL);
  for (const t of tensors) mapped.set(t.cpuParam, t.offset / 2);
  paramBuffer.unmap();
  // 16-bit gradients of an odd count end mid-word: the other half holds SENTINEL, a NaN, which neither
  // the pre-pass (skipNonFinite, clipping) nor the update may see.
  const gradBuffer = device.createBuffer({ label: 'test.halfParams.grads', size: gradAt + 4, usage: STORAGE_USAGE, mappedAtCreation: true });
  new Uint16Array(gradBuffer.getMappedRange()).fill(SENTINEL);
  gradBuffer.unmap();

  const groupOptions = [options, { lr: 4 }, { lr: paramDtype === 'f16' ? 1e-6 : 1e-32 }];
  const all: RMSPropConfig = { gradDtype, paramDtype, ...options };
  const gpuGroups = groupOptions.map((o, g) => ({
    ...o,
    params: tensors.filter((t) => t.group === g).map((t) => ({
      name: t.name,
      param: { buffer: paramBuffer, offset: t.offset, size: t.n * 2 },
      grad: { buffer: gradBuffer, offset: t.gradOffset, size: t.n * gradBytes },
    })),
  }));
  const opt = new RMSProp(device, gpuGroups, all);
  const cpuGroups = groupOptions.map((o, g) => ({ ...o, params: tensors.filter((t) => t.group === g).map((t) => ({ name: t.name, param: t.cpuParam, grad: t.cpuGrad })) }));
  const cpu = cpuTwin(cpuGroups, all);

  const twin = {
    opt, cpu, tensors, paramBuffer, gpuGroups, all,
    /** Fresh gradients for both (edge tensors: their fixed ones); `edit` may change the f32 values first. */
    setGrads(edit?: (grads: Float32Array[]) => void) {
      const grads = tensors.map((t) => t.fixedGrads ?? randomGrads(t.n, random));
      edit?.(grads);
      tensors.forEach((t, i) => {
        const g = gradDtype === 'f32' ? grads[i]! : encodeHalves(grads[i]!, gradDtype);
        t.cpuGrad.set(g);
        device.queue.writeBuffer(gradBuffer, t.gradOffset, wholeWords(g));
      });
    },
    step() {
      twin.opt.step();
      cpu.step();
    },
    /**
     * The caller's buffer: each tensor's 16-bit values against the twin's at the adapter's tolerance
     * (values that overflowed to ±Infinity included), every other half-word still SENTINEL, and
     * readParams() the buffer's own values decoded, bit for bit.
     */
    async expectParams(what: string) {
      const raw = new Uint16Array(await readBytes(device, paramBuffer));
      const mine = new Uint8Array(raw.length);
      const bounds = await cpu.bounds();
      const read = await twin.opt.readParams();
      tensors.forEach((t, i) => {
        const halves = raw.slice(t.offset / 2, t.offset / 2 + t.n);
        const decoded = decodeHalves(halves, paramDtype, new Float32Array(t.n));
        expectClose(decoded, decodeHalves(t.cpuParam, paramDtype, new Float32Array(t.n)), `${what}: '${t.name}'`, bounds?.params[i], { allowNonFinite: true });
        expectBitExact(read[i]!, decoded, `${what}: readParams ${i} against the buffer`);
        mine.fill(1, t.offset / 2, t.offset / 2 + t.n);
      });
      const clobbered = raw.findIndex((h, i) => mine[i] === 0 && h !== SENTINEL);
      expect(clobbered, `${what}: half-word ${clobbered} outside the tensors changed`).toBe(-1);
    },
    /** Parameters and every state slot (the master copy too) against the twin's, at the adapter's tolerance. */
    async expectState(what: string) {
      await expectMatchesTwin(twin.opt, cpu, what, { allowNonFinite: true });
    },
    destroy() {
      twin.opt.destroy();
      paramBuffer.destroy();
      gradBuffer.destroy();
    },
  };
  return twin;
}

/** Two states of the GPU (saved and loaded, before and after a skipped step): the same bits, on every adapter. */
function expectStatesEqual(a: RMSPropState, b: RMSPropState, what: string): void {
  expect(a.step).toBe(b.step);
  a.tensors.forEach((t, i) => {
    const c = b.tensors[i]!;
    for (const key of ['squareAvg', 'gradAvg', 'momentumBuffer', 'master'] as const) {
      expect(t[key] === undefined, `${what}: ${key} ${i} present on one side only`).toBe(c[key] === undefined);
      if (t[key]) expectBitExact(t[key], c[key]!, `${what}: ${key} ${i}`);
    }
  });
}

describe('16-bit parameters', () => {
  const cases: { paramDtype: Half; gradDtype: 'f32' | Half; master: boolean; options: RMSPropConfig }[] = [
    { paramDtype: 'f16', gradDtype: 'f32', master: false, options: {} },
    { paramDtype: 'f16', gradDtype: 'f32', master: true, options: { centered: true, momentum: 0.9 } },
    { paramDtype: 'f16', gradDtype: 'f16', master: true, options: { momentum: 0.5, weightDecay: 0.01 } },
    { paramDtype: 'f16', gradDtype: 'f16', master: false, options: { centered: true } },
    { paramDtype: 'f16', gradDtype: 'f16', master: true, options: { skipNonFinite: true, clipGradNorm: 1, lossScale: 8 } },
    { paramDtype: 'bf16', gradDtype: 'f32', master: false, options: { momentum: 0.9 } },
    { paramDtype: 'bf16', gradDtype: 'f32', master: true, options: {} },
    { paramDtype: 'bf16', gradDtype: 'bf16', master: true, options: { centered: true, momentum: 0.9, lrInMomentum: true } },
    { paramDtype: 'bf16', gradDtype: 'bf16', master: false, options: { weightDecay: 0.1, weightDecayMode: 'decoupled' } },
  ];
  cases.forEach(({ paramDtype, gradDtype, master, options }, c) => {
    const what = `${paramDtype} params, ${gradDtype} grads, ${master ? 'master copy' : 'no master copy'}, ${JSON.stringify(options)}`;
    gpuTest(`${what}: every step equals the twin, and no neighbouring half-word changes`, gpu, async (device) => {
      const t = halfParamTwin(device, paramDtype, gradDtype, { ...options, masterWeights: master }, 90 + c);
      // The master copy is the caller's values, decoded exactly, before any step.
      if (master) await t.expectState('made');
      for (let s = 0; s < 4; s++) {
        t.setGrads();
        t.step();
        await t.expectParams(`step ${s}`);
        await t.expectState(`step ${s}`);
      }
      t.destroy();
    });
  });

  gpuTest('f16: 65504 plus a step overflows to Infinity, the master copy keeps the f32 value; subnormals round to even', gpu, async (device) => {
    const t = halfParamTwin(device, 'f16', 'f32', {}, 100);
    t.setGrads();
    t.step();
    await t.expectParams('one step');
    const big = t.tensors.find((x) => x.name === 'big')!, tiny = t.tensors.find((x) => x.name === 'tiny')!;
    // Step 1 moves each by lr / sqrt(1 - alpha) = 40 against its gradient's sign: 65504 + 40 passes
    // 65520 (65504 + half an ULP) to Infinity; 65472 + 40 = 65512 does not, and rounds to 65504.
    expect(f16ToF32(big.cpuParam[0]!)).toBe(Infinity);
    expect(f16ToF32(big.cpuParam[1]!)).toBe(-Infinity);
    expect(f16ToF32(big.cpuParam[2]!)).toBe(65504);
    // The twin's master copy keeps 65504 + 40; the GPU's matches it (expectState: at the adapter's tolerance).
    expect((await t.cpu.stateDict()).tensors.find((x) => x.name === 'big')!.master![0]).toBe(65544);
    await t.expectState('one step');
    // 3e-5 - 1e-5 and 1e-7 - 1e-5 are f16 subnormals (below 2^-14).
    const decoded = Array.from(tiny.cpuParam, f16ToF32);
    expect(Math.abs(decoded[1]!)).toBeLessThan(2 ** -14);
    expect(decoded[1]).not.toBe(0);
    t.destroy();
  });

  gpuTest('without a master copy, updates below half a 16-bit ULP are lost; with one they add up', gpu, async (device) => {
    const make = (masterWeights: boolean) => {
      const param = device.createBuffer({ label: `test.small[${masterWeights}]`, size: 4, usage: STORAGE_USAGE, mappedAtCreation: true });
      new Uint16Array(param.getMappedRange()).set(encodeHalves(new Float32Array([1, 1]), 'f16'));
      param.unmap();
      const grad = device.createBuffer({ label: `test.small.grad[${masterWeights}]`, size: 8, usage: STORAGE_USAGE, mappedAtCreation: true });
      new Float32Array(grad.getMappedRange()).set([1, -1]);
      grad.unmap();
      // With alpha 0 each step moves by lr = 2e-5 (g / |g|), far under half of f16's ULP next to 1 (2^-12 below, 2^-11 above).
      const opt = new RMSProp(device, [{ param, grad }], { paramDtype: 'f16', masterWeights, lr: 2e-5, alpha: 0 });
      return { opt, param, grad };
    };
    const [plain, mastered] = [make(false), make(true)];
    for (let s = 0; s < 40; s++) { plain.opt.step(); mastered.opt.step(); }
    const [p] = await plain.opt.readParams(), [m] = await mastered.opt.readParams();
    expect(Array.from(p!)).toEqual([1, 1]); // 1 - 2e-5 rounds back to 1 every time
    expect(m![0]).toBeLessThan(1); // the master holds 1 - 40 * 2e-5 = 0.9992, which rounds to 1 - 2^-10
    expect(m![1]).toBeGreaterThan(1);
    for (const x of [plain, mastered]) { x.opt.destroy(); x.param.destroy(); x.grad.destroy(); }
  });

  gpuTest('skipNonFinite leaves 16-bit parameters and the master copy untouched; clipping reads the same gradients', gpu, async (device) => {
    const t = halfParamTwin(device, 'bf16', 'f32', { skipNonFinite: true, clipGradNorm: 1, momentum: 0.9 }, 101);
    t.setGrads();
    t.step();
    await t.expectParams('step');
    const before = new Uint8Array(await readBytes(device, t.paramBuffer));
    const state = await t.opt.stateDict();
    t.setGrads((g) => { g[1]![1029] = NaN; });
    t.step();
    expect(Array.from(new Uint8Array(await readBytes(device, t.paramBuffer)))).toEqual(Array.from(before));
    expectStatesEqual({ ...(await t.opt.stateDict()), step: state.step }, state, 'skipped');
    expect(await t.opt.skippedSteps()).toBe(1);
    t.setGrads();
    t.step();
    await t.expectParams('after the skip');
    await t.expectState('after the skip');
    t.destroy();
  });

  gpuTest('the master copy round-trips through stateDict and safetensors: resuming is bit-exact', gpu, async (device) => {
    const options = { momentum: 0.9, centered: true };
    const t = halfParamTwin(device, 'f16', 'f32', { ...options, masterWeights: true }, 102);
    for (let s = 0; s < 2; s++) { t.setGrads(); t.step(); }
    const saved = await t.opt.stateDict();
    expect(saved.tensors.every((x) => x.master instanceof Float32Array && x.master.length === x.size)).toBe(true);
    const loaded = safetensorsToStateDict(stateDictToSafetensors(saved));
    expectStatesEqual(loaded, saved, 'safetensors');
    // A fresh optimizer over the same buffer (its own master copy, from the rounded values) takes the saved one.
    t.opt.destroy();
    const resumed = new RMSProp(device, t.gpuGroups, t.all);
    resumed.loadStateDict(loaded);
    t.opt = resumed;
    for (let s = 0; s < 2; s++) {
      t.setGrads();
      t.step();
      await t.expectParams(`resumed step ${s}`);
      await t.expectState(`resumed step ${s}`);
    }
    // Bad master copies are refused, and nothing changes.
    const good = await resumed.stateDict();
    const without = { ...good, tensors: good.tensors.map(({ master: _, ...rest }) => rest) };
    expect(() => resumed.loadStateDict(without)).toThrow(/master must be a Float32Array/);
    const short = { ...good, tensors: good.tensors.map((x) => ({ ...x, master: x.master!.subarray(1) })) };
    expect(() => resumed.loadStateDict(short)).toThrow(/master has \d+ elements, expected/);
    expect(() => t.cpu.loadStateDict(without)).toThrow(/master must be a Float32Array/);
    expectStatesEqual(await resumed.stateDict(), good, 'after refused loads');
    t.destroy();
  });

  for (const dtype of ['f16', 'bf16'] as const) {
    gpuTest(`${dtype}: the shader decodes every bit pattern exactly and rounds f32 to nearest even as f32To${dtype === 'f16' ? 'F16' : 'Bf16'}`, gpu, async (device) => {
      // Decoding: every 16-bit pattern into the master copy (initMaster), once. An odd count: the last word is half used.
      const n = 65536 + 1;
      const all = new Uint16Array(n).map((_, i) => i & 0xffff);
      const param = device.createBuffer({ label: `test.every.${dtype}`, size: Math.ceil(n / 2) * 4, usage: STORAGE_USAGE, mappedAtCreation: true });
      new Uint16Array(param.getMappedRange(), 0, n).set(all);
      param.unmap();
      const grad = device.createBuffer({ label: `test.every.grad.${dtype}`, size: n * 4, usage: STORAGE_USAGE });
      const options: RMSPropConfig = { paramDtype: dtype, lr: 0 };
      const opt = new RMSProp(device, [{ param: { buffer: param, size: n * 2 }, grad, name: 'every' }], options);
      const gpuState = await opt.stateDict();
      const [g, c] = [gpuState.tensors[0]!.master!, decodeHalves(all, dtype, new Float32Array(n))];
      // NaN payloads: the shader keeps them (as an f32 NaN), the CPU's decode gives the canonical NaN; both NaN.
      const nan = (x: number) => Number.isNaN(x);
      expect(g.findIndex((x, i) => nan(x) !== nan(c[i]!))).toBe(-1);
      // Exact, on every adapter: bit operations, and f16 subnormals times 2^-24 (exact products). A bf16
      // subnormal is an f32 subnormal, which WGSL lets a bitcast flush to 0: compareTensor counts it as 0.
      const decoded = compareTensor(g.map((x) => (nan(x) ? 0 : x)), c.map((x) => (nan(x) ? 0 : x)), undefined, 'exact', { allowNonFinite: true });
      expect(decoded.pass, describeComparison(decoded, 'decoded')).toBe(true);

      // Encoding: f32 values through the update with lr 0 (p - 0 = p), written back rounded: ties
      // between neighbouring 16-bit values, just above and below them, edges, and random bit patterns.
      const values: number[] = [0, -0, Infinity, -Infinity, NaN, 65504, 65519.99, 65520, -65520, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14, 2 ** -14 - 2 ** -25, 3.4028234663852886e38];
      const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
      const top = dtype === 'f16' ? 0x7bff : 0x7f7f;
      for (let h = 0; h <= top; h++) {
        for (const sign of [0, 0x8000]) {
          const lo = dtype === 'f16' ? f16ToF32(h | sign) : bf16At(h | sign), hi = dtype === 'f16' ? f16ToF32((h + 1) | sign) : bf16At((h + 1) | sign);
          const mid = (lo + hi) / 2;
          values.push(mid, Math.fround(mid * (1 + 2 ** -20)), Math.fround(mid * (1 - 2 ** -20)));
        }
      }
      const random = rng(dtype === 'f16' ? 103 : 104);
      for (let i = 0; i < 20000; i++) { u32[0] = Math.floor(random() * 2 ** 32); values.push(f32[0]!); }
      // f32 subnormals (below 2^-126) are bf16 subnormals, which a GPU may flush: left out for bf16.
      const inputs = new Float32Array(values.filter((x) => dtype === 'f16' || !(x !== 0 && Math.abs(x) < 2 ** -126)));
      const m = inputs.length;
      const param2 = device.createBuffer({ label: `test.encode.${dtype}`, size: Math.ceil(m / 2) * 4, usage: STORAGE_USAGE });
      const grad2 = device.createBuffer({ label: `test.encode.grad.${dtype}`, size: m * 4, usage: STORAGE_USAGE });
      const opt2 = new RMSProp(device, [{ param: { buffer: param2, size: m * 2 }, grad: grad2, name: 'encode' }], options);
      const saved = await opt2.stateDict();
      opt2.loadStateDict({ ...saved, tensors: [{ ...saved.tensors[0]!, master: inputs }] });
      opt2.step();
      const written = new Uint16Array(await readBytes(device, param2), 0, m);
      const expected = encodeHalves(inputs, dtype);
      expectBitExact(Uint32Array.from(written), Uint32Array.from(expected), `encoded ${m} values`);
      for (const b of [param, grad, param2, grad2]) b.destroy();
      opt.destroy();
      opt2.destroy();
    }, 60_000);
  }

  for (const dtype of ['f16', 'bf16'] as const) {
    gpuTest(`f32 parameters, ${dtype} gradients of odd counts: the half-word after each is neither read by the pre-pass nor the update`, gpu, async (device) => {
      const random = rng(dtype === 'f16' ? 106 : 107);
      const sizes = [5, 7, 1, 1031, 3];
      const options: RMSPropConfig = { gradDtype: dtype, skipNonFinite: true, clipGradNorm: 2, lossScale: 4, momentum: 0.9 };
      let at = 0;
      const offsets = sizes.map((n) => { const o = at; at = align256(at + n * 2); return o; });
      const gradBuffer = device.createBuffer({ label: `test.oddGrads.${dtype}`, size: at, usage: STORAGE_USAGE, mappedAtCreation: true });
      new Uint16Array(gradBuffer.getMappedRange()).fill(SENTINEL);
      gradBuffer.unmap();
      const params = sizes.map((n) => randomParams(n, random));
      const paramBuffers = params.map((p, i) => {
        const b = device.createBuffer({ label: `test.oddGrads.param[${i}]`, size: p.byteLength, usage: STORAGE_USAGE });
        device.queue.writeBuffer(b, 0, wholeWords(p));
        return b;
      });
      const cpuGrads = sizes.map((n) => new Uint16Array(n));
      const opt = new RMSProp(device, sizes.map((n, i) => ({ param: paramBuffers[i]!, grad: { buffer: gradBuffer, offset: offsets[i]!, size: n * 2 }, name: `g${i}` })), options);
      const cpu = cpuTwin(sizes.map((_, i) => ({ param: params[i]!, grad: cpuGrads[i]!, name: `g${i}` })), options);
      for (let s = 0; s < 3; s++) {
        sizes.forEach((n, i) => {
          const g = encodeHalves(randomGrads(n, random), dtype);
          cpuGrads[i]!.set(g);
          device.queue.writeBuffer(gradBuffer, offsets[i]!, wholeWords(g));
        });
        opt.step();
        cpu.step();
        await expectMatchesTwin(opt, cpu, `step ${s}`);
        expect(await opt.skippedSteps()).toBe(0);
        await expectNormClose(opt, cpu, `step ${s}: norm`);
      }
      opt.destroy();
      gradBuffer.destroy();
      paramBuffers.forEach((b) => b.destroy());
    });
  }

  gpuTest('bad 16-bit parameter layouts are refused before any GPU work', gpu, (device) => {
    const param = device.createBuffer({ label: 'test.param16', size: 512, usage: STORAGE_USAGE });
    const short = device.createBuffer({ label: 'test.param16.short', size: 6, usage: STORAGE_USAGE });
    const grad = device.createBuffer({ label: 'test.grad32', size: 512, usage: STORAGE_USAGE });
    const ok = { param: { buffer: param, size: 6 }, grad: { buffer: grad, size: 12 } };
    expect(() => new RMSProp(device, [ok], { paramDtype: 'f16' }).destroy()).not.toThrow();
    const refused: [unknown, RMSPropConfig, typeof TypeError | typeof RangeError, RegExp][] = [
      [{ ...ok, param: { buffer: param, size: 5 } }, { paramDtype: 'f16' }, RangeError, /an odd number: it must hold whole 16-bit values/],
      [{ ...ok, param: { buffer: param, offset: 2, size: 6 } }, { paramDtype: 'f16' }, RangeError, /offset is 2, not a multiple/],
      [{ ...ok, param: { buffer: short, size: 6 } }, { paramDtype: 'f16' }, RangeError, /end mid-word .* make the buffer at least 8 bytes/],
      [{ ...ok, grad: { buffer: grad, size: 8 } }, { paramDtype: 'bf16' }, RangeError, /grad covers 8 bytes but 3 f32 gradients take 12/],
      [{ ...ok, grad: { buffer: short, size: 6 } }, { paramDtype: 'f16', gradDtype: 'f16' }, RangeError, /grad: 3 f16 values end mid-word .* at least 8 bytes/],
      [{ param: { buffer: grad, size: 12 }, grad: { buffer: short, size: 6 } }, { gradDtype: 'bf16' }, RangeError, /grad: 3 bf16 values end mid-word/],
      [ok, { paramDtype: 'f8' as never }, TypeError, /paramDtype must be 'f32', 'f16' or 'bf16'/],
      [ok, { paramDtype: 'f16', masterWeights: 1 as never }, TypeError, /masterWeights must be true or false/],
    ];
    for (const [spec, options, type, message] of refused) {
      expect(() => new RMSProp(device, [spec as never], options), message.source).toThrow(type);
      expect(() => new RMSProp(device, [spec as never], options)).toThrow(message);
    }
    const arena = new ParamArena(device, [{ name: 'w', size: 8 }], 'test.arena');
    expect(() => new RMSProp(device, arena.specs(), { paramDtype: 'f16' })).toThrow(/ParamArena, whose parameters are f32/);
    expect(() => new ReferenceRMSProp([{ param: new Float32Array(2), grad: new Float32Array(2) }], { paramDtype: 'f16' })).toThrow(/param must be a Uint16Array of f16 bit patterns/);
    expect(() => new ReferenceRMSProp([{ param: new Uint16Array(3), grad: new Float32Array(3) }], { paramDtype: 'bf16', gradDtype: 'bf16' })).toThrow(/grad must be a Uint16Array of bf16/);
    arena.destroy();
    [param, short, grad].forEach((b) => b.destroy());
  });
});

describe('a 16-bit tensor past the storage binding limit', () => {
  // WebGPU's default limits (128 MiB per binding): with v, m, b and the master copy (16 bytes of state
  // per element) a chunk holds 8,388,608 elements; this tensor is two chunks, the second ending in a tail of 3.
  let device: GPUDevice | undefined;
  const uncaptured: string[] = [];
  beforeAll(async () => {
    device = (await requestNodeDevice({ defaultLimits: true, label: 'webgpu-rmsprop half-params tests (default limits)' })).device;
    device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
  });
  afterAll(() => device?.destroy());

  test('f16 parameters with a master copy, in two chunks: as the twin, the half-word after them untouched', async () => {
    const d = device!;
    const options: RMSPropConfig = { paramDtype: 'f16', centered: true, momentum: 0.9, lr: 1e-3 };
    const maxChunk = packedChunkElements(maxChunkElements(d.limits.maxStorageBufferBindingSize, d.limits.maxBufferSize, stateSlots({ centered: true, momentum: 0.9, paramDtype: 'f16', masterWeights: true })));
    const n = maxChunk + 1027;
    const chunks = planChunks(n, maxChunk);
    expect(chunks.length).toBe(2);
    expect(chunks[1]!.tailCount).toBe(3);
    await withErrorScopes(d, async () => {
      const random = rng(105);
      const values = encodeHalves(randomParams(n, random), 'f16');
      const param = d.createBuffer({ label: 'test.chunked16', size: (n + 1) * 2, usage: STORAGE_USAGE, mappedAtCreation: true });
      const mapped = new Uint16Array(param.getMappedRange());
      mapped.set(values);
      mapped[n] = SENTINEL;
      param.unmap();
      const grad = d.createBuffer({ label: 'test.chunked16.grad', size: n * 4, usage: STORAGE_USAGE });
      const opt = new RMSProp(d, [{ param: { buffer: param, size: n * 2 }, grad, name: 'w' }], options);
      const cpuGrad = new Float32Array(n);
      const cpu = cpuTwin([{ param: values, grad: cpuGrad, name: 'w' }], options);
      try {
        const pool = randomGrads(65_537, random);
        for (let step = 0; step < 2; step++) {
          for (let i = 0, j = step * 7919; i < n; i++, j = (j + 40_009) % pool.length) cpuGrad[i] = pool[j]!;
          d.queue.writeBuffer(grad, 0, cpuGrad);
          opt.step();
          cpu.step();
        }
        const raw = new Uint16Array(await readBytes(d, param));
        expect(raw[n]).toBe(SENTINEL);
        expectBitExact((await opt.readParams())[0]!, decodeHalves(raw.subarray(0, n), 'f16', new Float32Array(n)), 'readParams against the buffer');
        await expectMatchesTwin(opt, cpu, 'two chunks, two steps');
      } finally {
        opt.destroy();
        param.destroy();
        grad.destroy();
      }
    });
    await d.queue.onSubmittedWorkDone();
    expect(uncaptured, 'uncaptured WebGPU errors').toEqual([]);
  }, 60_000);
});
