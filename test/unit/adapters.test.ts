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
    expect(() => adapterChoice({ WEBGPU_ADAPTER: 'llvmpipe' })).toThrow(/WEBGPU_ADAPTER must be one of auto, swiftshader, lavapipe, hardware; got 'llvmpipe'/);
  });
});

describe('adapterKind and the tolerance of each', () => {
  const seen: [string, Parameters<typeof adapterKind>[0], ReturnType<typeof adapterKind>][] = [
    ['Dawn on SwiftShader', { vendor: 'google', architecture: 'swiftshader', device: 'swiftshader-device-subzero-', description: 'SwiftShader driver 5.0.0', isFallbackAdapter: true }, 'swiftshader'],
    ['Deno on SwiftShader', { vendor: '6880', architecture: '', device: '49374', description: 'SwiftShader Device (Subzero)' }, 'swiftshader'],
    ['Dawn on lavapipe', { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1', isFallbackAdapter: true }, 'lavapipe'],
    ['Deno on lavapipe', { vendor: '65541', architecture: '', device: '0', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }, 'lavapipe'],
    ['another CPU adapter', { vendor: 'microsoft', architecture: '', device: '', description: 'Microsoft Basic Render Driver', isFallbackAdapter: true }, 'software'],
    ['a GPU', { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200' }, 'hardware'],
  ];
  it.each(seen)('%s', (_, info, kind) => {
    expect(adapterKind(info)).toBe(kind);
    const words = [info.vendor, info.architecture, info.device, info.description].join(' ');
    // 0 ULPs only where measured: the two CPU drivers; everything else gets the WGSL bound.
    expect(toleranceFor(words).kind).toBe(kind === 'swiftshader' || kind === 'lavapipe' ? 'exact' : 'bound');
  });
});
