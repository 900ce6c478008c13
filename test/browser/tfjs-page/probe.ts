/**
 * The path of TF.js 4.22's dataSync on WebGPU, without TF.js and without this library: four known
 * pixels copied into a WebGPU canvas's texture, the canvas drawn into a 2D canvas, read back. Run on
 * a page (and browser) of its own, before the TF.js page: where it fails it can take the browser's
 * WebGPU down with it (headless Chromium on SwiftShader reads zeros, then loses every device).
 * Sets `window.__canvasReadback` to the 16 bytes read (10,20,30,255, 40,50,60,255, ... where it works).
 */
export async function canvasReadbackProbe(): Promise<number[]> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('requestAdapter() returned null.');
  const device = await adapter.requestDevice({ label: 'canvas readback probe' });
  const canvas = new OffscreenCanvas(4, 1);
  const context = canvas.getContext('webgpu');
  if (!context) throw new Error("OffscreenCanvas.getContext('webgpu') returned null.");
  context.configure({ device, format: 'bgra8unorm', usage: GPUTextureUsage.COPY_DST, alphaMode: 'premultiplied' });
  const buffer = device.createBuffer({ label: 'probe pixels', size: 256, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, new Uint8Array([10, 20, 30, 255, 40, 50, 60, 255, 70, 80, 90, 255, 1, 2, 3, 255]));
  const encoder = device.createCommandEncoder({ label: 'probe' });
  encoder.copyBufferToTexture({ buffer, bytesPerRow: 256 }, { texture: context.getCurrentTexture() }, { width: 4, height: 1 });
  device.queue.submit([encoder.finish()]);
  const target = new OffscreenCanvas(4, 1).getContext('2d', { willReadFrequently: true });
  if (!target) throw new Error("OffscreenCanvas.getContext('2d') returned null.");
  target.drawImage(canvas, 0, 0);
  return Array.from(target.getImageData(0, 0, 4, 1).data);
}

declare global {
  interface Window {
    __canvasReadback?: number[] | string;
  }
}

canvasReadbackProbe().then(
  (bytes) => { window.__canvasReadback = bytes; },
  (error: unknown) => { window.__canvasReadback = error instanceof Error ? error.message : String(error); },
);
