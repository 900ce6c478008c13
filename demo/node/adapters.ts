/**
 * What `WEBGPU_ADAPTER` may say and what an adapter is: the pure part of demo/node/dawn.ts (no
 * WebGPU here), so that unit tests can check it without a driver.
 */
import { existsSync } from 'node:fs';

/** What `WEBGPU_ADAPTER` may say. */
export const ADAPTER_CHOICES = ['auto', 'swiftshader', 'lavapipe', 'hardware'] as const;
export type AdapterChoice = (typeof ADAPTER_CHOICES)[number];

/** What an adapter is: one of the two CPU Vulkan drivers, another CPU (fallback) adapter, or a GPU. */
export type AdapterKind = 'swiftshader' | 'lavapipe' | 'software' | 'hardware';

/** Where Linux distributions keep the two CPU drivers' Vulkan ICD files. */
export const ICD_FILES: Readonly<Record<'swiftshader' | 'lavapipe', readonly string[]>> = {
  // Debian's (and some other distributions') chromium package.
  swiftshader: [
    '/usr/lib/chromium/vk_swiftshader_icd.json',
    '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
    '/usr/lib64/chromium-browser/vk_swiftshader_icd.json',
  ],
  // Mesa's mesa-vulkan-drivers (Debian 13, or Debian 12's bookworm-backports: Dawn needs Mesa >= 23).
  lavapipe: [
    '/usr/share/vulkan/icd.d/lvp_icd.json',
    '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json',
    '/usr/share/vulkan/icd.d/lvp_icd.aarch64.json',
  ],
};

/** How to install each CPU driver, for error messages. */
export const INSTALL_HINT: Record<'swiftshader' | 'lavapipe', string> = {
  swiftshader: 'run `npm run setup` (on Debian it installs chromium and libvulkan1), or install them yourself',
  lavapipe: 'run `npm run setup` (on Debian it installs Mesa 23 or later\'s mesa-vulkan-drivers: Debian 13\'s own, ' +
    'Debian 12\'s from bookworm-backports), or install them yourself',
};

/**
 * The adapter choice in `env.WEBGPU_ADAPTER` (`auto` when unset or empty). Throws a RangeError naming
 * the choices for anything else.
 *
 * @example
 * ```ts
 * adapterChoice({ WEBGPU_ADAPTER: 'lavapipe' }); // 'lavapipe'
 * ```
 */
export function adapterChoice(env: NodeJS.ProcessEnv = process.env): AdapterChoice {
  const value = (env.WEBGPU_ADAPTER ?? '').trim().toLowerCase() || 'auto';
  if (!(ADAPTER_CHOICES as readonly string[]).includes(value)) {
    throw new RangeError(`WEBGPU_ADAPTER must be one of ${ADAPTER_CHOICES.join(', ')}; got '${env.WEBGPU_ADAPTER}'.`);
  }
  return value as AdapterChoice;
}

/** What an adapter's info says about it (GPUAdapterInfo's fields, all optional). */
export interface AdapterWords {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/**
 * What an adapter is, from its info: SwiftShader, lavapipe (Mesa's llvmpipe), another CPU adapter
 * (a fallback adapter), or hardware.
 *
 * @example
 * ```ts
 * adapterKind({ vendor: 'mesa', architecture: 'software', description: 'llvmpipe: Mesa 25.0.7' }); // 'lavapipe'
 * ```
 */
export function adapterKind(info: AdapterWords): AdapterKind {
  const words = [info.vendor, info.architecture, info.device, info.description].join(' ');
  if (/swiftshader/i.test(words)) return 'swiftshader';
  if (/llvmpipe|lavapipe/i.test(words)) return 'lavapipe';
  if (info.isFallbackAdapter || /\bsoftware\b|\bcpu\b|warp|basic render/i.test(words)) return 'software';
  return 'hardware';
}

/**
 * The first of `kind`'s ICD files that exists here, if any.
 *
 * @example
 * ```ts
 * findIcd('lavapipe'); // '/usr/share/vulkan/icd.d/lvp_icd.json' where Mesa's driver is installed
 * ```
 */
export function findIcd(kind: 'swiftshader' | 'lavapipe'): string | undefined {
  return ICD_FILES[kind].find((path) => existsSync(path));
}

