// The roofline of bench/step-cost.ts: kernels that move exactly the bytes of an RMSProp step, with
// next to no arithmetic, laid out and indexed as shaders/rmsprop.wgsl (one vec4 per invocation, the
// state's slots `stride` vec4s apart, a 2-D grid folded into one index). What the library's step
// reaches on an adapter is measured against these. Not the library's shader: a benchmark only.

override WORKGROUP_SIZE: u32 = 256u;
override SLOTS: u32 = 1u; // state slots read and written: 1 (v, plain) to 3 (v, m, b: centered + momentum)

struct Size {
  count4: u32,
  stride: u32,
}

@group(0) @binding(0) var<uniform> size: Size;
@group(0) @binding(1) var<storage, read_write> p: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> g: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> state: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> sink: array<f32>;

// Reads p, g and every state slot, writes p and every slot: (2 + 2 * SLOTS + 1) * 16 bytes a vec4.
@compute @workgroup_size(WORKGROUP_SIZE)
fn moveStep(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= size.count4) { return; }
  let gi = g[i];
  p[i] = p[i] + gi;
  state[i] = state[i] + gi;
  if (SLOTS > 1u) { state[i + size.stride] = state[i + size.stride] + gi; }
  if (SLOTS > 2u) { state[i + 2u * size.stride] = state[i + 2u * size.stride] + gi; }
}

// Reads g once (the pre-pass's 4 bytes an element); the sink is written only if a value were huge,
// which keeps the loads without adding traffic.
@compute @workgroup_size(WORKGROUP_SIZE)
fn readGrad(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= size.count4) { return; }
  let s = dot(g[i], g[i]);
  if (s > 1e30) { sink[0] = s; }
}
