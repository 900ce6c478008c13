/**
 * WebGPU in Node through Dawn (the `webgpu` package), on the adapter `WEBGPU_ADAPTER` picks. Used by
 * `npm start`, `npm run verify`, the GPU tests and the benchmarks.
 *
 * `WEBGPU_ADAPTER`:
 * - `auto` (the default): a hardware adapter if Vulkan has one, else Mesa's lavapipe, else
 *   SwiftShader (a CPU Vulkan driver that Debian's chromium package ships), else none. When
 *   VK_ICD_FILENAMES or VK_DRIVER_FILES is set, what it points at, as given.
 * - `swiftshader`, `lavapipe`: that CPU driver (VK_ICD_FILENAMES and VK_DRIVER_FILES are set to its
 *   ICD file before Dawn starts), or a clear error when it is not installed.
 * - `hardware`: the adapter Vulkan finds (VK_ICD_FILENAMES as set, if set), which must not be a CPU driver.
 * Whatever was chosen, the adapter's description is checked against the choice.
 */
import { tmpdir } from 'node:os';
import { create, globals } from 'webgpu';
import {
  adapterChoice, adapterKind, findIcd, ICD_FILES, INSTALL_HINT, type AdapterChoice, type AdapterKind,
} from './adapters.js';

export {
  ADAPTER_CHOICES, adapterChoice, adapterKind, findIcd, ICD_FILES, type AdapterChoice, type AdapterKind,
} from './adapters.js';

export interface NodeGpu {
  readonly adapter: GPUAdapter;
  /** Vendor, architecture and description of the adapter, for logs. */
  readonly description: string;
  /** What the adapter is (from its description). */
  readonly kind: AdapterKind;
  /** True when the adapter is a CPU implementation (SwiftShader, lavapipe or another fallback adapter). */
  readonly isSoftware: boolean;
  /** The WEBGPU_ADAPTER choice this came from, and how it was resolved, in words. */
  readonly choice: AdapterChoice;
  readonly how: string;
  /** The Vulkan ICD file this process pointed Vulkan at, if it chose one (give it to child processes). */
  readonly icd?: string;
}

// Dawn's GPU objects must stay reachable while their devices live.
const instances: GPU[] = [];

/**
 * The WebGPU adapter `choice` (default: `WEBGPU_ADAPTER`) picks, in this process. `auto` returns
 * null when there is none at all (the caller may fall back to the CPU); an explicit choice throws
 * a clear error when its adapter is not there or the adapter found is not what was asked for.
 */
export async function requestNodeAdapter(choice: AdapterChoice = adapterChoice()): Promise<NodeGpu | null> {
  process.env.XDG_RUNTIME_DIR ??= tmpdir(); // Dawn warns without it
  Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, ...
  const given = process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES;
  if (choice === 'swiftshader' || choice === 'lavapipe') {
    const icd = findIcd(choice);
    if (!icd) {
      throw new Error(`WEBGPU_ADAPTER=${choice}: no ${choice} Vulkan ICD file here ` +
        `(looked for ${ICD_FILES[choice].join(', ')}): ${INSTALL_HINT[choice]}.`);
    }
    const found = await requestWith(icd);
    if (!found) throw new Error(`WEBGPU_ADAPTER=${choice}: Dawn found no adapter through ${icd}. Is libvulkan1 installed?`);
    if (kindOf(found) !== choice) {
      throw new Error(`WEBGPU_ADAPTER=${choice}: ${icd} gave '${describe(found)}', which is not ${choice}.`);
    }
    return result(found, choice, `${choice} (VK_ICD_FILENAMES=${icd})`, icd);
  }
  if (choice === 'hardware') {
    const found = await requestWith(undefined);
    if (!found) {
      throw new Error('WEBGPU_ADAPTER=hardware: Dawn found no Vulkan adapter. ' +
        'Install your GPU\'s Vulkan driver (or point VK_ICD_FILENAMES at its ICD file).');
    }
    if (kindOf(found) !== 'hardware') {
      throw new Error(`WEBGPU_ADAPTER=hardware: the adapter Vulkan gives is '${describe(found)}', a CPU driver. ` +
        'Install your GPU\'s Vulkan driver, or point VK_ICD_FILENAMES at its ICD file.');
    }
    return result(found, choice, given ? 'hardware (VK_ICD_FILENAMES as set)' : 'hardware');
  }
  // auto
  if (given) {
    const found = await requestWith(undefined);
    return found ? result(found, choice, `the driver VK_ICD_FILENAMES / VK_DRIVER_FILES names (${given})`) : null;
  }
  const first = await requestWith(undefined);
  if (first && kindOf(first) === 'hardware') return result(first, choice, 'a hardware adapter');
  if (first && kindOf(first) === 'lavapipe') return result(first, choice, 'no hardware adapter: lavapipe');
  for (const kind of ['lavapipe', 'swiftshader'] as const) {
    const icd = findIcd(kind);
    if (!icd) continue;
    const found = await requestWith(icd);
    if (found && kindOf(found) === kind) {
      const missing = kind === 'swiftshader' ? 'no hardware adapter or lavapipe' : 'no hardware adapter';
      return result(found, choice, `${missing}: ${kind} (VK_ICD_FILENAMES=${icd})`, icd);
    }
  }
  // Nothing better: whatever Vulkan gave first (another CPU adapter), or none.
  if (!first) return null;
  delete process.env.VK_ICD_FILENAMES;
  delete process.env.VK_DRIVER_FILES;
  const how = 'no hardware adapter, lavapipe or SwiftShader: the adapter Vulkan gives';
  return result(await requestWith(undefined) ?? first, choice, how);
}

/** A new Dawn instance with Vulkan pointed at `icd` (or left as the environment says), and its adapter. */
async function requestWith(icd: string | undefined): Promise<GPUAdapter | null> {
  if (icd) {
    process.env.VK_ICD_FILENAMES = icd;
    process.env.VK_DRIVER_FILES = icd;
  }
  const gpu = create([]);
  instances.push(gpu);
  return gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
}

function describe(adapter: GPUAdapter): string {
  const { vendor, architecture, device, description } = adapter.info;
  return [vendor, architecture, device, description].filter(Boolean).join(' ').trim() || 'unknown adapter';
}

function kindOf(adapter: GPUAdapter): AdapterKind {
  return adapterKind(adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean });
}

function result(adapter: GPUAdapter, choice: AdapterChoice, how: string, chosen?: string): NodeGpu {
  const kind = kindOf(adapter);
  // The driver's ICD file, for child processes: the one chosen, else the one set, else (a CPU driver
  // the loader found by itself) its usual place.
  const icd = chosen ?? (process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES || undefined) ??
    (kind === 'swiftshader' || kind === 'lavapipe' ? findIcd(kind) : undefined);
  const description = describe(adapter);
  return { adapter, description, kind, isSoftware: kind !== 'hardware', choice, how, ...(icd ? { icd } : {}) };
}

/**
 * One line for logs: the adapter, what it is, and how WEBGPU_ADAPTER chose it.
 *
 * @example
 * ```ts
 * const found = await requestNodeAdapter();
 * if (found) console.log(adapterLine(found));
 * // adapter: ... llvmpipe: Mesa 25.0.7 ... [lavapipe; WEBGPU_ADAPTER=auto: no hardware adapter: lavapipe]
 * ```
 */
export function adapterLine(found: NodeGpu): string {
  return `adapter: ${found.description} [${found.kind}; WEBGPU_ADAPTER=${found.choice}: ${found.how}]`;
}

/**
 * The environment for a child process (Deno, another Node) that should use the same Vulkan driver
 * as `found`: its ICD file when this process chose one.
 *
 * @example
 * ```ts
 * spawnSync('deno', ['run', 'check.js'], { env: childGpuEnv(found) });
 * ```
 */
export function childGpuEnv(found: NodeGpu | null, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, XDG_RUNTIME_DIR: env.XDG_RUNTIME_DIR ?? tmpdir() };
  if (found?.icd) {
    out.VK_ICD_FILENAMES = found.icd;
    out.VK_DRIVER_FILES = found.icd;
  }
  return out;
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
      'No WebGPU adapter: Dawn found no Vulkan driver. Install one: Mesa\'s lavapipe (mesa-vulkan-drivers), ' +
        'or Debian\'s chromium and libvulkan1 for SwiftShader (apt-get install chromium libvulkan1); ' +
        'or set VK_ICD_FILENAMES to a Vulkan ICD file.',
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
