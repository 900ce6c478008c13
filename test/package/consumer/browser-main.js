// Browser: the same check on navigator.gpu; the test reads window.__result.
import { check, describe } from './check.js';

try {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) throw new Error('No WebGPU adapter in this browser.');
  const device = await adapter.requestDevice({ label: 'consumer (browser)' });
  const result = await check(device);
  window.__result = { ...result, adapter: describe(adapter.info) };
} catch (error) {
  window.__result = { failure: String(error && error.stack || error) };
}
