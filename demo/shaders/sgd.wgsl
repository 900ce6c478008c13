// Plain gradient descent, p = p - lr * g, over one buffer range: the baseline the demo runs beside
// RMSProp. The CPU twin is `CpuSgd` in demo/problems/sgd.ts.

override WORKGROUP_SIZE: u32 = 64u;

struct Hyper {
  lr: f32,
  count: u32,  // elements in the range
}

@group(0) @binding(0) var<uniform> hyper: Hyper;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>; // read_write: it may share a buffer with param

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= hyper.count) { return; }
  let step = hyper.lr * grad[i];
  param[i] = param[i] - step;
}
