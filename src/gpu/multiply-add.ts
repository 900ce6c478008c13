/**
 * Which rounding an adapter's WGSL `fma` does. WGSL allows `fma(a, b, c)` to round once (a hardware
 * fused multiply-add) or twice (`a*b` rounded, then the sum): SwiftShader does the latter. The CPU
 * reference rounds either way (`MultiplyAdd`), so a test can hold the GPU to the last bit.
 */
import type { MultiplyAdd } from '../rule/reference.js';

// a*b = 2^-24 (1 + 2^-30) exactly, so a*b + 1 lies just above the tie between 1 and 1 + 2^-23:
// rounded once it is 1 + 2^-23; with a*b rounded first (to 2^-24) the sum is a tie and goes to 1.
const A = Math.fround(2 ** -24 * (1 + 2 ** -10));
const B = Math.fround(1 - 2 ** -10 + 2 ** -20);
const FUSED = Math.fround(1 + 2 ** -23);

const PROBE_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> io: array<vec4f>;
@compute @workgroup_size(1)
fn main() {
  // The operands come from memory so that no compiler can fold the fma at build time.
  io[1] = fma(io[0].xxxx, io[0].yyyy, io[0].zzzz);
}`;

/**
 * Runs one `fma` on `device` and says how it rounded. Makes and frees a 32-byte buffer; about one
 * millisecond. Throws if the result is neither rounding.
 *
 * @example
 * ```ts
 * const optimizer = new RMSProp(device, params, options);
 * const twin = new ReferenceRMSProp(cpuParams, options, { multiplyAdd: await detectMultiplyAdd(device) });
 * ```
 */
export async function detectMultiplyAdd(device: GPUDevice): Promise<MultiplyAdd> {
  const module = device.createShaderModule({ label: 'rmsprop/fma-probe', code: PROBE_WGSL });
  const pipeline = device.createComputePipeline({
    label: 'rmsprop/fma-probe',
    layout: 'auto',
    compute: { module, entryPoint: 'main' },
  });
  const io = device.createBuffer({
    label: 'rmsprop/fma-probe/io',
    size: 32,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const readback = device.createBuffer({
    label: 'rmsprop/fma-probe/readback',
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    device.queue.writeBuffer(io, 0, new Float32Array([A, B, 1, 0]));
    const encoder = device.createCommandEncoder({ label: 'rmsprop/fma-probe' });
    const pass = encoder.beginComputePass({ label: 'rmsprop/fma-probe' });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({
      label: 'rmsprop/fma-probe',
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: io } }],
    }));
    pass.dispatchWorkgroups(1);
    pass.end();
    encoder.copyBufferToBuffer(io, 16, readback, 0, 16);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const lanes = Array.from(new Float32Array(readback.getMappedRange()));
    readback.unmap();
    if (lanes.every((x) => x === FUSED)) return 'fused';
    if (lanes.every((x) => x === 1)) return 'separate';
    throw new Error(
      `detectMultiplyAdd: fma(${A}, ${B}, 1) gave ${lanes.join(', ')}: neither one rounding (${FUSED}) nor two (1).`,
    );
  } finally {
    io.destroy();
    readback.destroy();
  }
}
