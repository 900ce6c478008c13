// Deno: WebGPU is built in (wgpu). The package resolves from ./node_modules (package.json present).
import { check, describe } from './check.js';

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error('No WebGPU adapter in Deno.');
const device = await adapter.requestDevice({ label: 'consumer (deno)' });
const result = await check(device);
console.log(JSON.stringify({ ...result, adapter: describe(adapter.info) }));
device.destroy();
