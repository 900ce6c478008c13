// Probe kernels for bench/probe.ts: the memory traffic of an RMSProp step (read p, g, v; write p, v)
// with more or less arithmetic, and a plain copy, to tell what bounds the step on an adapter.
// Not the library's shader (that is shaders/rmsprop.wgsl): experiments only.

override WORKGROUP_SIZE: u32 = 256u;
override MATH: u32 = 0u;            // 0: p += g; v += g*g   1: RMSProp plain (sqrt, divide)   2: as 1 with a reciprocal square root

struct Hyper { count4: u32, lr: f32, alpha: f32, eps: f32 }
@group(0) @binding(0) var<uniform> hp: Hyper;
@group(0) @binding(1) var<storage, read_write> p: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> g: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> v: array<vec4f>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn stream5(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // One vec4 per invocation, indexed as the library's shader does.
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= hp.count4) { return; }
  let gi = g[i];
  var vi = v[i];
  var pi = p[i];
  if (MATH == 0u) {
    pi = pi + gi;
    vi = vi + gi * gi;
  } else {
    vi = fma((1.0 - hp.alpha) * gi, gi, hp.alpha * vi);
    if (MATH == 1u) {
      pi = pi - (hp.lr * gi) / sqrt(vi + hp.eps);
    } else {
      pi = pi - hp.lr * gi * inverseSqrt(vi + hp.eps);
    }
  }
  p[i] = pi;
  v[i] = vi;
}

// p = g: 8 bytes an element, the compute-shader twin of copyBufferToBuffer.
@compute @workgroup_size(WORKGROUP_SIZE)
fn copy(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= hp.count4) { return; }
  p[i] = g[i];
}

// stream5 with one f32 per invocation instead of one vec4: adjacent invocations read adjacent
// floats. (A module may bind two variables at one slot when no entry point uses both.)
@group(0) @binding(1) var<storage, read_write> pS: array<f32>;
@group(0) @binding(2) var<storage, read_write> gS: array<f32>;
@group(0) @binding(3) var<storage, read_write> vS: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn stream5Scalar(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= hp.count4 * 4u) { return; }
  let gi = gS[i];
  var vi = vS[i];
  var pi = pS[i];
  if (MATH == 0u) {
    pi = pi + gi;
    vi = vi + gi * gi;
  } else {
    vi = fma((1.0 - hp.alpha) * gi, gi, hp.alpha * vi);
    if (MATH == 1u) {
      pi = pi - (hp.lr * gi) / sqrt(vi + hp.eps);
    } else {
      pi = pi - hp.lr * gi * inverseSqrt(vi + hp.eps);
    }
  }
  pS[i] = pi;
  vS[i] = vi;
}

// RMSProp centered with momentum (TF.js's form: eps inside the root, lr inside the momentum), written
// inline: no struct, no pointer, no override branches; the state in one buffer as the library keeps
// it (v, m, b slots of count4 vec4s each). 36 bytes an element.
@group(0) @binding(3) var<storage, read_write> state: array<vec4f>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn centeredMomentum(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  let n = hp.count4;
  if (i >= n) { return; }
  let gi = g[i];
  let a = hp.alpha;
  let v = fma((1.0 - a) * gi, gi, a * state[i]);
  let m = fma(gi, vec4f(1.0 - a), a * state[i + n]);
  let d = max(fma(-m, m, v), vec4f(0.0));
  let b = 0.9 * state[i + 2u * n] + (hp.lr * gi) / sqrt(d + hp.eps);
  p[i] = p[i] - b;
  state[i] = v;
  state[i + n] = m;
  state[i + 2u * n] = b;
}
