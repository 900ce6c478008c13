// Node: WebGPU from the `webgpu` package (Dawn). VK_ICD_FILENAMES may point Vulkan at SwiftShader.
import { create, globals } from 'webgpu';
import { check, describe } from './check.js';

Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, ...
const gpu = create([]); // keep it referenced: Dawn's devices crash if their GPU object is collected
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error('No WebGPU adapter in Node (Dawn).');
const device = await adapter.requestDevice({ label: 'consumer (node)' });
const result = await check(device);
console.log(JSON.stringify({ ...result, adapter: describe(adapter.info) }));
device.destroy();
