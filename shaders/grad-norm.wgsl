// The gradient pre-pass of a step (options skipNonFinite and clipGradNorm): whether any gradient
// element is NaN or ±Inf, and the global L2 norm over every tensor, into a small control buffer that
// shaders/rmsprop.wgsl reads later in the same compute pass. Nothing is read back.
// The CPU twin of this file is `gradNormStats` in src/rule/reference.ts; keep the two line for line.
//
// Two levels, each wide, in a fixed order (src/gpu/reduce-plan.ts plans it):
//   `partialNorms`  one workgroup per block of a tensor: WORKGROUP_SIZE lanes, each summing
//                   `laneVec4s` vec4s strided by WORKGROUP_SIZE, then `workgroupSum` over the
//                   lanes, one partial per block. Blocks never cross tensors, and they are numbered tensor by
//                   tensor, so the order depends on the tensors' sizes only: not on whether they
//                   share a ParamArena (one dispatch for all its blocks, through a table) or not,
//                   nor on how a tensor past the binding limit is cut (pieces are whole blocks).
//   `finish`        one workgroup: lane l sums partials l, l + WORKGROUP_SIZE, ... (a few each:
//                   laneVec4s keeps the partials near TARGET_PARTIALS), `workgroupSum`, the square
//                   root, the clipping factor, and the skip counter.
// So the same gradients give the same bits on every run, and on the CPU twin.

override WORKGROUP_SIZE: u32 = 256u; // GROUP * GROUP (see workgroupSum)
override GRAD_DTYPE: u32 = 0u;       // 0: f32 (partialNorms); 1: f16, 2: bf16 (partialNormsPacked)

// One dispatch of `partialNorms`: a run of blocks in one gradient binding.
struct Run {
  firstBlock: u32, // its first entry in `blocks`
  blockCount: u32, // workgroups that do work (a 2-D grid may have more)
  laneVec4s: u32,  // vec4s each lane sums in a block
  tailStart: u32,  // where the tail of a tensor that has one starts in gradTail (gradTailPacked: its word)
  unscale: f32,    // 1 / lossScale: the norm is of the unscaled gradients
}

// A block: vec4s [first4, first4 + count4) of the binding, then, if tailCount > 0, the tensor's last
// 1 to 3 elements (from gradTail) as one more vec4, zero-padded; its partial goes to `partials[partial]`.
struct Block {
  first4: u32,
  count4: u32,
  tailCount: u32,
  partial: u32,
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

@group(0) @binding(0) var<uniform> run: Run;
@group(0) @binding(1) var<storage, read> grad: array<vec4f>;
@group(0) @binding(2) var<storage, read> gradTail: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(4) var<storage, read_write> control: Control;
@group(0) @binding(5) var<uniform> finishing: Finish;
// 16-bit gradients, as shaders/rmsprop.wgsl binds them.
@group(0) @binding(6) var<storage, read> gradPacked: array<vec2u>;
@group(0) @binding(7) var<storage, read> gradTailPacked: array<u32>;
@group(0) @binding(8) var<storage, read> blocks: array<Block>;

// The lanes' sums and non-finite flags, for `workgroupSum`.
var<workgroup> sums: array<f32, WORKGROUP_SIZE>;
var<workgroup> flags: array<u32, WORKGROUP_SIZE>;

// Lanes per group of `workgroupSum`'s first round: WORKGROUP_SIZE must be GROUP * GROUP (256).
const GROUP = 16u;

// NaN or ±Inf: every exponent bit set. Tested on the bits of the gradient as loaded, before any
// arithmetic: WGSL lets an implementation assume finite values in arithmetic and comparisons.
fn nonFinite(x: vec4f) -> bool {
  return any((bitcast<vec4u>(x) & vec4u(0x7f800000u)) == vec4u(0x7f800000u));
}

fn sumSquares(x: vec4f) -> f32 {
  var s = x.x * x.x;
  s = fma(x.y, x.y, s);
  s = fma(x.z, x.z, s);
  return fma(x.w, x.w, s);
}

// The workgroup's sum of `s` and OR of `bad`, valid in lane 0, in a fixed order and two rounds:
// lane g < GROUP adds lanes GROUP * g .. GROUP * g + GROUP - 1 in turn, then lane 0 adds those
// GROUP results in turn. Two barriers (a tree of halvings takes eight, and a CPU adapter pays a
// switch of every SIMD group of the workgroup at each). Every lane must call it (uniform flow).
fn workgroupSum(lid: u32, s: f32, bad: u32) -> Partial {
  sums[lid] = s;
  flags[lid] = bad;
  workgroupBarrier();
  if (lid < GROUP) {
    let first = GROUP * lid;
    var t = sums[first];
    var b = flags[first];
    for (var k = 1u; k < GROUP; k++) {
      t = t + sums[first + k];
      b = b | flags[first + k];
    }
    sums[first] = t; // its own group's first slot: no other lane reads it in this round
    flags[first] = b;
  }
  workgroupBarrier();
  var total = Partial(0.0, 0u);
  if (lid == 0u) {
    total = Partial(sums[0], flags[0]);
    for (var g = 1u; g < GROUP; g++) {
      total.sumSq = total.sumSq + sums[GROUP * g];
      total.bad = total.bad | flags[GROUP * g];
    }
  }
  return total;
}

// The f32 gradients of element vec4 j of a block (j == count4: the tail vec4).
fn loadF32(b: Block, j: u32) -> vec4f {
  if (j < b.count4) { return grad[b.first4 + j]; }
  var x = vec4f(0.0);
  for (var k = 0u; k < b.tailCount; k++) { x[k] = gradTail[run.tailStart + k]; }
  return x;
}

// The same for 16-bit gradients; an odd count's last high half is not the tensor's: dropped.
fn loadPacked(b: Block, j: u32) -> vec4f {
  if (j < b.count4) {
    let words = gradPacked[b.first4 + j];
    return vec4f(unpackHalves(words.x), unpackHalves(words.y));
  }
  var t = vec4f(unpackHalves(gradTailPacked[run.tailStart]), 0.0, 0.0);
  if (b.tailCount > 2u) { t = vec4f(t.xy, unpackHalves(gradTailPacked[run.tailStart + 1u])); }
  return select(vec4f(0.0), t, vec4u(0u, 1u, 2u, 3u) < vec4u(b.tailCount));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn partialNorms(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let w = wid.x + wid.y * groups.x;
  let live = w < run.blockCount; // uniform per workgroup: the barriers below stay in uniform flow
  var s = 0.0;
  var bad = false;
  if (live) {
    let b = blocks[run.firstBlock + w];
    let vec4s = b.count4 + select(0u, 1u, b.tailCount > 0u);
    for (var k = 0u; k < run.laneVec4s; k++) {
      let j = lid + k * WORKGROUP_SIZE;
      if (j >= vec4s) { break; }
      let x = loadF32(b, j);
      bad = bad || nonFinite(x);
      s = s + sumSquares(x * run.unscale);
    }
  }
  finishBlock(lid, w, live, s, bad);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn partialNormsPacked(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let w = wid.x + wid.y * groups.x;
  let live = w < run.blockCount;
  var s = 0.0;
  var bad = false;
  if (live) {
    let b = blocks[run.firstBlock + w];
    let vec4s = b.count4 + select(0u, 1u, b.tailCount > 0u);
    for (var k = 0u; k < run.laneVec4s; k++) {
      let j = lid + k * WORKGROUP_SIZE;
      if (j >= vec4s) { break; }
      let x = loadPacked(b, j); // decoded by bit operations: a 16-bit NaN or Inf stays one
      bad = bad || nonFinite(x);
      s = s + sumSquares(x * run.unscale);
    }
  }
  finishBlock(lid, w, live, s, bad);
}

// The block's partial. Every lane of every workgroup reaches the barriers.
fn finishBlock(lid: u32, w: u32, live: bool, s: f32, bad: bool) {
  let total = workgroupSum(lid, s, select(0u, 1u, bad));
  if (lid == 0u && live) { partials[blocks[run.firstBlock + w].partial] = total; }
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
  let total = workgroupSum(lid, s, bad);
  if (lid == 0u) {
    let norm = sqrt(total.sumSq);
    control.bad = total.bad;
    control.norm = norm;
    // PyTorch's clip_grad_norm_: max_norm / (total_norm + 1e-6) is `reciprocal() * max_norm`,
    // then clamped at 1 (a NaN norm stays NaN, as there).
    var scale = 1.0;
    if (finishing.maxNorm > 0.0) {
      let c = (1.0 / (norm + 1e-6)) * finishing.maxNorm;
      scale = select(c, 1.0, c >= 1.0);
    }
    control.scale = scale;
    if (finishing.countSkip != 0u && total.bad != 0u) { control.skipped = control.skipped + 1u; }
  }
}
