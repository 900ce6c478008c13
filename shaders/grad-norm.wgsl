// The gradient pre-pass of a step (options skipNonFinite and clipGradNorm): whether any gradient
// element is NaN or ±Inf, and the global L2 norm over every tensor, into a small control buffer that
// shaders/rmsprop.wgsl reads later in the same compute pass. Nothing is read back.
// The CPU twin of this file is `gradNormStats` in src/reference.ts; keep the two line for line.
//
// `partialNorms` runs once per tensor (per piece of a tensor past the binding limit, pieces being
// whole workgroups long): each workgroup sums the squares of 256 vec4s in a tree and writes one
// partial. `finish` (one workgroup) sums all partials in a fixed order, and so the result does not
// depend on scheduling: the same bits on every run, and on the CPU twin.

override WORKGROUP_SIZE: u32 = 256u; // a power of two (the trees halve it)
override GRAD_DTYPE: u32 = 0u;       // 0: f32 (partialNorms); 1: f16, 2: bf16 (partialNormsPacked)

// One dispatch of `partialNorms`: a tensor's gradient (or a piece of it) as the body and tail
// bindings of shaders/rmsprop.wgsl.
struct Unit {
  count4: u32,       // whole vec4s in the body
  tailStart: u32,    // first tail element in gradTail
  tailCount: u32,    // 0 to 3: read by the invocation after the body's last
  firstPartial: u32, // where this dispatch's partials go
  unscale: f32,      // 1 / lossScale: the check and the norm see unscaled gradients
}

struct Partial {
  sumSq: f32,
  bad: u32,
}

struct Finish {
  partialCount: u32,
  maxNorm: f32,   // clipGradNorm, 0 when off
  countSkip: u32, // 1 when skipNonFinite: count the steps skipped
}

// The same layout as shaders/rmsprop.wgsl's Control.
struct Control {
  bad: u32,
  scale: f32,
  norm: f32,
  skipped: u32,
}

@group(0) @binding(0) var<uniform> unit: Unit;
@group(0) @binding(1) var<storage, read> grad: array<vec4f>;
@group(0) @binding(2) var<storage, read> gradTail: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(4) var<storage, read_write> control: Control;
@group(0) @binding(5) var<uniform> finishing: Finish;
// 16-bit gradients, as shaders/rmsprop.wgsl binds them.
@group(0) @binding(6) var<storage, read> gradPacked: array<vec2u>;
@group(0) @binding(7) var<storage, read> gradTailPacked: array<u32>;

var<workgroup> sums: array<f32, WORKGROUP_SIZE>;
var<workgroup> anyBad: atomic<u32>;

// NaN or ±Inf: every exponent bit set. On the bits, so no fast-math assumption can drop the test.
fn nonFinite(x: vec4f) -> bool {
  return any((bitcast<vec4u>(x) & vec4u(0x7f800000u)) == vec4u(0x7f800000u));
}

fn sumSquares(x: vec4f) -> f32 {
  var s = x.x * x.x;
  s = fma(x.y, x.y, s);
  s = fma(x.z, x.z, s);
  return fma(x.w, x.w, s);
}

// Sums `sums` into sums[0], halving the active lanes each round.
fn treeSum(lid: u32) {
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { sums[lid] = sums[lid] + sums[lid + stride]; }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn partialNorms(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let w = wid.x + wid.y * groups.x;
  let i = w * WORKGROUP_SIZE + lid;
  var x = vec4f(0.0);
  if (i < unit.count4) {
    x = grad[i];
  } else if (i == unit.count4) {
    for (var k = 0u; k < unit.tailCount; k++) { x[k] = gradTail[unit.tailStart + k]; }
  }
  partial(lid, w, x);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn partialNormsPacked(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let w = wid.x + wid.y * groups.x;
  let i = w * WORKGROUP_SIZE + lid;
  var x = vec4f(0.0);
  if (i < unit.count4) {
    let words = gradPacked[i];
    x = vec4f(unpackHalves(words.x), unpackHalves(words.y));
  } else if (i == unit.count4 && unit.tailCount > 0u) {
    // 1 to 3 elements in one or two words; an odd count's last high half is not the tensor's: dropped.
    var t = vec4f(unpackHalves(gradTailPacked[unit.tailStart]), 0.0, 0.0);
    if (unit.tailCount > 2u) { t = vec4f(t.xy, unpackHalves(gradTailPacked[unit.tailStart + 1u])); }
    x = select(vec4f(0.0), t, vec4u(0u, 1u, 2u, 3u) < vec4u(unit.tailCount));
  }
  partial(lid, w, x);
}

fn partial(lid: u32, w: u32, gradient: vec4f) {
  let x = gradient * unit.unscale;
  if (nonFinite(x)) { atomicOr(&anyBad, 1u); }
  sums[lid] = sumSquares(x);
  treeSum(lid);
  if (lid == 0u) { partials[unit.firstPartial + w] = Partial(sums[0], atomicLoad(&anyBad)); }
}

// As in shaders/rmsprop.wgsl: the two 16-bit floats of a word, low half first, exactly.
fn unpackHalves(w: u32) -> vec2f {
  if (GRAD_DTYPE == 2u) { return vec2f(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }
  return vec2f(f16ToF32(w & 0xffffu), f16ToF32(w >> 16u));
}

fn f16ToF32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) { return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u)); }
  if (exponent == 0u) {
    let magnitude = f32(mantissa) * 5.9604644775390625e-8;
    return select(magnitude, -magnitude, sign != 0u);
  }
  return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn finish(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var bad = 0u;
  for (var k = lid; k < finishing.partialCount; k += WORKGROUP_SIZE) {
    s = s + partials[k].sumSq;
    bad = bad | partials[k].bad;
  }
  if (bad != 0u) { atomicOr(&anyBad, 1u); }
  sums[lid] = s;
  treeSum(lid);
  if (lid == 0u) {
    let norm = sqrt(sums[0]);
    let isBad = atomicLoad(&anyBad);
    control.bad = isBad;
    control.norm = norm;
    // PyTorch's clip_grad_norm_: max_norm / (total_norm + 1e-6) is `reciprocal() * max_norm`,
    // then clamped at 1 (a NaN norm stays NaN, as there).
    var scale = 1.0;
    if (finishing.maxNorm > 0.0) {
      let c = (1.0 / (norm + 1e-6)) * finishing.maxNorm;
      scale = select(c, 1.0, c >= 1.0);
    }
    control.scale = scale;
    if (finishing.countSkip != 0u && isBad != 0u) { control.skipped = control.skipped + 1u; }
  }
}
