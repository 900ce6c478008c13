/**
 * The adapter switch's pure part (demo/node/adapters.ts): what WEBGPU_ADAPTER may say, and what an
 * adapter is from its info (Dawn's and Deno's descriptions of the same drivers included).
 */
import { describe, expect, it } from 'vitest';
import { ADAPTER_CHOICES, adapterChoice, adapterKind } from '../../demo/node/adapters.js';
import { toleranceFor } from '../../demo/check/compare.js';

describe('WEBGPU_ADAPTER', () => {
  it('is auto when unset or empty, any of the four choices in any case, and nothing else', () => {
    expect(adapterChoice({})).toBe('auto');
    expect(adapterChoice({ WEBGPU_ADAPTER: '' })).toBe('auto');
    for (const c of ADAPTER_CHOICES) expect(adapterChoice({ WEBGPU_ADAPTER: c.toUpperCase() })).toBe(c);
    expect(() => adapterChoice({ WEBGPU_ADAPTER: 'llvmpipe' }))
      .toThrow(/WEBGPU_ADAPTER must be one of auto, swiftshader, lavapipe, hardware; got 'llvmpipe'/);
  });
});

describe('adapterKind and the tolerance of each', () => {
  const info = (vendor: string, architecture: string, device: string, description: string, isFallbackAdapter = false) =>
    ({ vendor, architecture, device, description, isFallbackAdapter });
  const seen: [string, Parameters<typeof adapterKind>[0], ReturnType<typeof adapterKind>][] = [
    ['Dawn on SwiftShader', info('google', 'swiftshader', 'swiftshader-device-subzero-', 'SwiftShader driver 5.0.0', true), 'swiftshader'],
    ['Deno on SwiftShader', info('6880', '', '49374', 'SwiftShader Device (Subzero)'), 'swiftshader'],
    ['Dawn on lavapipe', info('mesa', 'software', 'llvmpipe-llvm-15-0-6-256-bits-', 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1', true), 'lavapipe'],
    ['Deno on lavapipe', info('65541', '', '0', 'llvmpipe (LLVM 15.0.6, 256 bits)'), 'lavapipe'],
    ['another CPU adapter', info('microsoft', '', '', 'Microsoft Basic Render Driver', true), 'software'],
    ['a GPU', info('nvidia', 'hopper', '', 'NVIDIA H200'), 'hardware'],
  ];
  it.each(seen)('%s', (_, info, kind) => {
    expect(adapterKind(info)).toBe(kind);
    const words = [info.vendor, info.architecture, info.device, info.description].join(' ');
    // 0 ULPs only where measured: the two CPU drivers; everything else gets the WGSL bound.
    expect(toleranceFor(words).kind).toBe(kind === 'swiftshader' || kind === 'lavapipe' ? 'exact' : 'bound');
  });
});
