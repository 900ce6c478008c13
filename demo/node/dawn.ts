/**
 * WebGPU in Node through Dawn (the `webgpu` package): the best adapter there is, else SwiftShader
 * (a CPU Vulkan driver that Debian's chromium package ships), else none. Used by `npm start`, the
 * GPU tests and the benchmarks.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { create, globals } from 'webgpu';

/** Where Debian's (and some other distributions') Chromium keeps SwiftShader's Vulkan ICD. */
const SWIFTSHADER_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
  '/usr/lib64/chromium-browser/vk_swiftshader_icd.json',
];

export interface NodeGpu {
  readonly adapter: GPUAdapter;
  /** Vendor, architecture and description of the adapter, for logs. */
  readonly description: string;
  /** True when the adapter is SwiftShader, a CPU implementation. */
  readonly isSoftware: boolean;
}

// Dawn's GPU objects must stay reachable while their devices live.
const instances: GPU[] = [];

/**
 * The highest-performance WebGPU adapter Dawn finds in this process, or null. Falls back to
 * SwiftShader when Vulkan finds no driver of its own and VK_ICD_FILENAMES is not set.
 */
export async function requestNodeAdapter(): Promise<NodeGpu | null> {
  process.env.XDG_RUNTIME_DIR ??= tmpdir(); // Dawn warns without it
  Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, ...
  let adapter = await requestFrom(create([]));
  const swiftshader = SWIFTSHADER_ICDS.find((path) => existsSync(path));
  if (!adapter && swiftshader && !process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES) {
    process.env.VK_ICD_FILENAMES = swiftshader;
    adapter = await requestFrom(create([]));
  }
  if (!adapter) return null;
  const { vendor, architecture, device, description } = adapter.info;
  const text = [vendor, architecture, device, description].filter(Boolean).join(' ').trim() || 'unknown adapter';
  return { adapter, description: text, isSoftware: /swiftshader/i.test(text) };
}

async function requestFrom(gpu: GPU): Promise<GPUAdapter | null> {
  instances.push(gpu);
  return gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
}

/**
 * A device on the best adapter, asking for the adapter's own buffer-size limits (a tensor past the
 * default 128 MiB binding is then one dispatch where the adapter allows) unless `defaultLimits`.
 * Throws a clear error when there is no adapter.
 */
export async function requestNodeDevice(
  options: { defaultLimits?: boolean; label?: string } = {},
): Promise<NodeGpu & { device: GPUDevice; grantedLimits: GrantedLimits }> {
  const found = await requestNodeAdapter();
  if (!found) {
    throw new Error(
      'No WebGPU adapter: Dawn found no Vulkan driver. Install one, or Debian\'s chromium and libvulkan1 for SwiftShader ' +
        '(apt-get install chromium libvulkan1), or set VK_ICD_FILENAMES to a Vulkan ICD file.',
    );
  }
  const { maxStorageBufferBindingSize, maxBufferSize } = found.adapter.limits;
  const device = await found.adapter.requestDevice({
    label: options.label ?? 'webgpu-rmsprop (node)',
    requiredLimits: options.defaultLimits ? {} : { maxStorageBufferBindingSize, maxBufferSize },
  });
  return { ...found, device, grantedLimits: grantedLimits(device) };
}

/** The limits that decide how RMSProp splits and dispatches a tensor, as the device granted them. */
export interface GrantedLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly minStorageBufferOffsetAlignment: number;
}

/**
 * The limits a device was granted that matter to RMSProp (what a tensor's chunking depends on).
 *
 * @example
 * ```ts
 * const { device } = await requestNodeDevice();
 * grantedLimits(device).maxStorageBufferBindingSize; // 1073741824 on SwiftShader
 * ```
 */
export function grantedLimits(device: GPUDevice): GrantedLimits {
  const { maxStorageBufferBindingSize, maxBufferSize, maxComputeWorkgroupsPerDimension, minStorageBufferOffsetAlignment } = device.limits;
  return { maxStorageBufferBindingSize, maxBufferSize, maxComputeWorkgroupsPerDimension, minStorageBufferOffsetAlignment };
}

/**
 * One line for logs: the granted binding and buffer limits, and what the adapter would allow where
 * it is more (so a log shows when a tensor is split because the device asked for less).
 *
 * @example
 * ```ts
 * const gpu = await requestNodeDevice();
 * console.log(describeLimits(gpu.device, gpu.adapter));
 * // limits: maxStorageBufferBindingSize 1024 MiB, maxBufferSize 1024 MiB, maxComputeWorkgroupsPerDimension 65535
 * ```
 */
export function describeLimits(device: GPUDevice, adapter?: GPUAdapter): string {
  const mib = (bytes: number) => (bytes % (1 << 20) === 0 ? `${bytes / (1 << 20)} MiB` : `${bytes} bytes`);
  const granted = grantedLimits(device);
  const part = (key: 'maxStorageBufferBindingSize' | 'maxBufferSize') => {
    const allowed = adapter?.limits[key];
    return `${key} ${mib(granted[key])}${allowed !== undefined && allowed > granted[key] ? ` (adapter allows ${mib(allowed)})` : ''}`;
  };
  return `limits: ${part('maxStorageBufferBindingSize')}, ${part('maxBufferSize')}, maxComputeWorkgroupsPerDimension ${granted.maxComputeWorkgroupsPerDimension}`;
}

/**
 * The Dawn `GPU` object (what `navigator.gpu` is in a browser) that gave the last adapter
 * `requestNodeAdapter` returned, or undefined before the first call. For libraries that look for
 * `navigator.gpu`, such as TF.js's WebGPU backend (the benchmarks set `navigator.gpu` to it).
 *
 * @example
 * ```ts
 * const { adapter } = (await requestNodeAdapter())!;
 * (globalThis as { navigator?: object }).navigator ??= {};
 * Object.assign(globalThis.navigator, { gpu: nodeGpuInstance() });
 * ```
 */
export function nodeGpuInstance(): GPU | undefined {
  return instances[instances.length - 1];
}
