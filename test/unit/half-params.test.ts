/**
 * The CPU twin of 16-bit parameters (paramDtype 'f16' / 'bf16', masterWeights): what it computes,
 * against the f32 optimizer and explicit rounding; the master copy in state dicts and safetensors.
 */
import { describe, expect, it } from 'vitest';
import { decodeHalves, encodeHalves } from '../../src/rule/half.js';
import { hasMaster, stateSlots } from '../../src/gpu/plan.js';
import { ReferenceRMSProp } from '../../src/rule/reference-optimizer.js';
import { safetensorsToStateDict, stateDictToSafetensors } from '../../src/state/safetensors.js';
import type { RMSPropState } from '../../src/state/state-dict.js';
import { bits, values } from './helpers/arrays.js';

const options = { centered: true, momentum: 0.9, lr: 0.05 };

describe('16-bit parameters on the CPU', () => {
  for (const dtype of ['f16', 'bf16'] as const) {
    it(`${dtype}, master copy: the f32 optimizer's trajectory, rounded after every step`, () => {
      const start = encodeHalves(values(37, 1), dtype);
      const halves = start.slice(), grad = new Float32Array(37);
      const half = new ReferenceRMSProp([{ param: halves, grad, name: 'w' }], { ...options, paramDtype: dtype });
      const f32 = decodeHalves(start, dtype, new Float32Array(37)), grad32 = new Float32Array(37);
      const plain = new ReferenceRMSProp([{ param: f32, grad: grad32, name: 'w' }], options);
      for (let s = 0; s < 6; s++) {
        grad.set(values(37, 10 + s, 3));
        grad32.set(grad);
        half.step();
        plain.step();
        expect(Array.from(halves)).toEqual(Array.from(encodeHalves(f32, dtype)));
      }
    });

    it(`${dtype}, no master copy: each step starts from the rounded values`, async () => {
      const halves = encodeHalves(values(37, 2), dtype), grad = new Float32Array(37);
      const half = new ReferenceRMSProp([{ param: halves, grad, name: 'w' }], { ...options, paramDtype: dtype, masterWeights: false });
      const f32 = decodeHalves(halves, dtype, new Float32Array(37)), grad32 = new Float32Array(37);
      const plain = new ReferenceRMSProp([{ param: f32, grad: grad32, name: 'w' }], options);
      for (let s = 0; s < 6; s++) {
        grad.set(values(37, 20 + s, 3));
        grad32.set(grad);
        half.step();
        plain.step();
        f32.set(decodeHalves(encodeHalves(f32, dtype), dtype, new Float32Array(37)));
        expect(Array.from(halves)).toEqual(Array.from(encodeHalves(f32, dtype)));
      }
      expect(bits((await half.readParams())[0]!)).toEqual(bits(f32));
      expect((await half.stateDict()).tensors[0]!.master).toBeUndefined();
    });
  }

  it('the master copy is the last state slot, only with 16-bit parameters and masterWeights', () => {
    expect(hasMaster({ paramDtype: 'f16', masterWeights: true })).toBe(true);
    expect(hasMaster({ paramDtype: 'bf16', masterWeights: false })).toBe(false);
    expect(hasMaster({ paramDtype: 'f32', masterWeights: true })).toBe(false);
    expect(stateSlots({ centered: true, momentum: 0.9, paramDtype: 'bf16', masterWeights: true })).toBe(4);
    expect(stateSlots({ centered: false, momentum: 0, paramDtype: 'f32', masterWeights: true })).toBe(1);
  });
});

describe('the master copy in checkpoints', () => {
  function trained(): { opt: ReferenceRMSProp; halves: Uint16Array } {
    const halves = encodeHalves(values(9, 3), 'f16');
    const grad = values(9, 4, 2);
    const opt = new ReferenceRMSProp([{ param: halves, grad, name: 'w' }], { ...options, paramDtype: 'f16' });
    opt.step();
    opt.step();
    return { opt, halves };
  }

  it("round-trips bit for bit as '<name>.master', and resuming from it is exact", async () => {
    const { opt, halves } = trained();
    const state = await opt.stateDict();
    const master = state.tensors[0]!.master!;
    expect(master).toBeInstanceOf(Float32Array);
    // The master holds what the 16-bit values lost.
    expect(bits(master)).not.toEqual(bits(decodeHalves(halves, 'f16', new Float32Array(9))));
    const bytes = stateDictToSafetensors(state);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)))));
    expect(header['w.master']).toEqual({ dtype: 'F32', shape: [9], data_offsets: expect.any(Array) });
    const loaded = safetensorsToStateDict(bytes);
    expect(bits(loaded.tensors[0]!.master!)).toEqual(bits(master));

    const again = halves.slice(), grad = values(9, 4, 2);
    const resumed = new ReferenceRMSProp([{ param: again, grad, name: 'w' }], { ...options, paramDtype: 'f16' });
    resumed.loadStateDict(loaded);
    opt.step();
    resumed.step();
    expect(Array.from(again)).toEqual(Array.from(halves));
    expect(bits((await resumed.stateDict()).tensors[0]!.master!)).toEqual(bits((await opt.stateDict()).tensors[0]!.master!));
  });

  it('a state without the master copy its options need, or with one they do not, is refused', async () => {
    const { opt } = trained();
    const state = await opt.stateDict();
    const { master: _, ...rest } = state.tensors[0]!;
    const without: RMSPropState = { ...state, tensors: [rest] };
    expect(() => opt.loadStateDict(without)).toThrow(/master must be a Float32Array/);
    expect(() => stateDictToSafetensors(without)).toThrow(/master must be a Float32Array/);
    const noMaster = { ...state, groups: state.groups.map((g) => ({ ...g, options: { ...g.options, masterWeights: false } })) };
    expect(() => stateDictToSafetensors(noMaster)).toThrow(/has a master that these options do not use/);
    const wrongLength: RMSPropState = { ...state, tensors: [{ ...state.tensors[0]!, master: new Float32Array(8) }] };
    expect(() => opt.loadStateDict(wrongLength)).toThrow(/master has 8 elements, expected 9/);
    // A state saved with f32 parameters does not load into an optimizer of 16-bit ones.
    const f32 = new ReferenceRMSProp([{ param: values(9, 3), grad: values(9, 4), name: 'w' }], options);
    const f32Groups = (await f32.stateDict()).groups;
    expect(() => opt.loadStateDict({ ...state, groups: f32Groups })).toThrow(/paramDtype/);
  });
});
