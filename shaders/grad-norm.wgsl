// The gradient pre-pass of a step (options skipNonFinite and clipGradNorm): whether any gradient
// element is NaN or ±Inf, and the global L2 norm over every tensor, into a small control buffer that
// shaders/rmsprop.wgsl reads later in the same compute pass. Nothing is read back.
// The CPU twin of this file is `gradNormStats` in src/rule/reference.ts; keep the two line for line.
//
// Two levels, each wide, in a fixed order (src/gpu/reduce-plan.ts plans it, sized from the adapter):
//   `partialNorms`  one workgroup per block of a tensor: WORKGROUP_SIZE lanes, each summing up to
//                   `laneVec4s` vec4s strided by WORKGROUP_SIZE (a masked load past the block's end,
//                   never a break), then `workgroupSum` over the lanes, one partial per block (or,
//                   LANE_PARTIALS, each lane's sum a partial of its own, with no barrier). Blocks
//                   never cross tensors, and they are numbered tensor by tensor, so the order depends on
//                   the tensors' sizes and the plan's target only: not on whether they share a
//                   ParamArena (one dispatch for all its blocks, through a table) or not, nor on how a
//                   tensor past the binding limit is cut (pieces are whole blocks).
//   `finish`        one workgroup: lane l sums partials l, l + WORKGROUP_SIZE, ..., `workgroupSum`,
//                   the square root, the clipping factor, and the skip counter.
// So the same gradients give the same bits on every run of a plan, and on the CPU twin given that plan.
//
// Nothing here depends on how a compiler treats NaN and Infinity (WGSL lets it assume they never
// occur): gradients are loaded as u32 words and tested as bits before any arithmetic; an element
// whose square could overflow (|g · unscale| >= 2^62, tested on its bits against `run.hugeBits`) is
// flagged and not summed; and every sum saturates: an operand at or past 2^126 flags the sum as
// overflowed instead of adding, so no arithmetic ever reaches Infinity. `finish` then writes the
// norm and the factor from the flags (see `finish`).

override WORKGROUP_SIZE: u32 = 256u; // GROUP * GROUP (see workgroupSum)
override GRAD_DTYPE: u32 = 0u;       // 0: f32 (partialNorms); 1: f16, 2: bf16 (partialNormsPacked)
// Each lane's sum is a partial of its own (partial = block * WORKGROUP_SIZE + lane), with no barrier:
// a plan of few blocks (src/gpu/reduce-plan.ts `usesLanePartials`: a CPU adapter's, where each
// workgroup that waits at a barrier costs about half a millisecond on SwiftShader).
override LANE_PARTIALS: bool = false;

// One dispatch of `partialNorms`: a run of blocks in one gradient binding.
struct Run {
  firstBlock: u32, // its first entry in `blocks`
  blockCount: u32, // workgroups that do work (a 2-D grid may have more)
  laneVec4s: u32,  // vec4s each lane sums in a block
  tailStart: u32,  // where the tail of a tensor that has one starts in gradTail (gradTailPacked: its word)
  unscale: f32,    // 1 / lossScale: the norm is of the unscaled gradients
  hugeBits: u32,   // the bits of f32(2^62 / unscale): a finite |g| at or above it is HUGE
}

// A block: vec4s [first4, first4 + count4) of the binding, then, if tailCount > 0, the tensor's last
// 1 to 3 elements (from gradTail) as one more vec4, zero-padded; its partial goes to `partials[partial]`.
struct Block {
  first4: u32,
  count4: u32,
  tailCount: u32,
  partial: u32,
}

// The sum of squares of a block, and what its lanes found (the OR of these flags).
struct Partial {
  sumSq: f32,
  flags: u32,
}

const INF_SEEN = 1u;  // an element is ±Infinity
const NAN_SEEN = 2u;  // an element is NaN
const HUGE = 4u;      // the sum of squares reached 2^126 (or an element's square could): see `addSq`
const BIG = 8.507059e37; // 2^126: sums below it add without overflow

struct Finish {
  partialCount: u32,
  maxNorm: f32,   // clipGradNorm, 0 when off
  countSkip: u32, // 1 when skipNonFinite: count the steps skipped
}

// The same layout as shaders/rmsprop.wgsl's Control, the two f32 fields written as their bits: a NaN
// or Infinity is stored by an integer store, never made by f32 arithmetic.
struct Control {
  bad: u32,
  scale: u32, // f32 bits
  norm: u32,  // f32 bits
  skipped: u32,
}

@group(0) @binding(0) var<uniform> run: Run;
// f32 gradients as their bits (see the top).
@group(0) @binding(1) var<storage, read> grad: array<vec4u>;
@group(0) @binding(2) var<storage, read> gradTail: array<u32>;
@group(0) @binding(3) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(4) var<storage, read_write> control: Control;
@group(0) @binding(5) var<uniform> finishing: Finish;
// 16-bit gradients, as shaders/rmsprop.wgsl binds them.
@group(0) @binding(6) var<storage, read> gradPacked: array<vec2u>;
@group(0) @binding(7) var<storage, read> gradTailPacked: array<u32>;
@group(0) @binding(8) var<storage, read> blocks: array<Block>;

// The lanes' sums and flags, for `workgroupSum`.
var<workgroup> sums: array<f32, WORKGROUP_SIZE>;
var<workgroup> flags: array<u32, WORKGROUP_SIZE>;

// Lanes per group of `workgroupSum`'s first round: WORKGROUP_SIZE must be GROUP * GROUP (256).
const GROUP = 16u;

// What the four elements' bits say: INF_SEEN, NAN_SEEN (every exponent bit set), HUGE (magnitude at
// or above run.hugeBits: positive f32s order as their bits).
fn classify(bits: vec4u) -> u32 {
  let magnitude = bits & vec4u(0x7fffffffu);
  let nonFinite = magnitude >= vec4u(0x7f800000u);
  let nan = magnitude > vec4u(0x7f800000u);
  var flags = select(0u, NAN_SEEN, any(nan));
  flags |= select(0u, INF_SEEN, any(nonFinite & !nan));
  flags |= select(0u, HUGE, any(!nonFinite & (magnitude >= vec4u(run.hugeBits))));
  return flags;
}

fn sumSquares(x: vec4f) -> f32 {
  var s = x.x * x.x;
  s = fma(x.y, x.y, s);
  s = fma(x.z, x.z, s);
  return fma(x.w, x.w, s);
}

// s + t for sums of squares (>= 0, finite), saturating: an operand at or past BIG flags HUGE and the
// result is BIG, so no sum ever overflows.
fn addSq(s: f32, t: f32, flags: ptr<function, u32>) -> f32 {
  if (s >= BIG || t >= BIG) {
    *flags |= HUGE;
    return BIG;
  }
  return s + t;
}

// A lane's sum over vec4s of a block whose bits `bits` gives: each vec4 tested, then (unless flagged)
// unscaled and its squares added.
fn laneStep(s: ptr<function, f32>, flags: ptr<function, u32>, bits: vec4u) {
  let found = classify(bits);
  *flags |= found;
  if (found == 0u) { *s = addSq(*s, sumSquares(bitcast<vec4f>(bits) * run.unscale), flags); }
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
      t = addSq(t, sums[first + k], &b);
      b = b | flags[first + k];
    }
    sums[first] = t; // its own group's first slot: no other lane reads it in this round
    flags[first] = b;
  }
  workgroupBarrier();
  var total = Partial(0.0, 0u);
  if (lid == 0u) {
    var t = sums[0];
    var b = flags[0];
    for (var g = 1u; g < GROUP; g++) {
      t = addSq(t, sums[GROUP * g], &b);
      b = b | flags[GROUP * g];
    }
    total = Partial(t, b);
  }
  return total;
}

// The bits of the f32 gradients of element vec4 j of a block (j == count4: the tail vec4, zero-padded).
fn loadF32(b: Block, j: u32) -> vec4u {
  if (j < b.count4) { return grad[b.first4 + j]; }
  var x = vec4u(0u);
  for (var k = 0u; k < b.tailCount; k++) { x[k] = gradTail[run.tailStart + k]; }
  return x;
}

// The same for 16-bit gradients, decoded to f32 bits exactly (a 16-bit NaN or Inf stays one); an odd
// count's last high half is not the tensor's: dropped.
fn loadPacked(b: Block, j: u32) -> vec4u {
  if (j < b.count4) {
    let words = gradPacked[b.first4 + j];
    return vec4u(unpackHalves(words.x), unpackHalves(words.y));
  }
  var t = vec4u(unpackHalves(gradTailPacked[run.tailStart]), 0u, 0u);
  if (b.tailCount > 2u) { t = vec4u(t.xy, unpackHalves(gradTailPacked[run.tailStart + 1u])); }
  return select(vec4u(0u), t, vec4u(0u, 1u, 2u, 3u) < vec4u(b.tailCount));
}

// Rounds of a block's lanes: its vec4s (the tail's one included) over WORKGROUP_SIZE, at most
// run.laneVec4s; uniform in the workgroup. Past the block's end a lane's load is masked to zeros.
fn roundsOf(b: Block) -> u32 {
  let vec4s = b.count4 + select(0u, 1u, b.tailCount > 0u);
  return min(run.laneVec4s, (vec4s + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE);
}

fn vec4sOf(b: Block) -> u32 {
  return b.count4 + select(0u, 1u, b.tailCount > 0u);
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
  var found = 0u;
  if (live) {
    let b = blocks[run.firstBlock + w];
    let vec4s = vec4sOf(b);
    for (var k = 0u; k < roundsOf(b); k++) {
      let j = lid + k * WORKGROUP_SIZE;
      var bits = vec4u(0u);
      if (j < vec4s) { bits = loadF32(b, j); }
      laneStep(&s, &found, bits);
    }
  }
  if (LANE_PARTIALS) {
    if (live) { partials[blocks[run.firstBlock + w].partial * WORKGROUP_SIZE + lid] = Partial(s, found); }
    return;
  }
  finishBlock(lid, w, live, s, found);
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
  var found = 0u;
  if (live) {
    let b = blocks[run.firstBlock + w];
    let vec4s = vec4sOf(b);
    for (var k = 0u; k < roundsOf(b); k++) {
      let j = lid + k * WORKGROUP_SIZE;
      var bits = vec4u(0u);
      if (j < vec4s) { bits = loadPacked(b, j); }
      laneStep(&s, &found, bits);
    }
  }
  if (LANE_PARTIALS) {
    if (live) { partials[blocks[run.firstBlock + w].partial * WORKGROUP_SIZE + lid] = Partial(s, found); }
    return;
  }
  finishBlock(lid, w, live, s, found);
}

// The block's partial. Every lane of every workgroup reaches the barriers.
fn finishBlock(lid: u32, w: u32, live: bool, s: f32, found: u32) {
  let total = workgroupSum(lid, s, found);
  if (lid == 0u && live) { partials[blocks[run.firstBlock + w].partial] = total; }
}

// As in shaders/rmsprop.wgsl: the two 16-bit floats of a word, low half first, exactly, as f32 bits.
fn unpackHalves(w: u32) -> vec2u {
  if (GRAD_DTYPE == 2u) { return vec2u(w << 16u, w & 0xffff0000u); }
  return vec2u(f16Bits(w & 0xffffu), f16Bits(w >> 16u));
}

fn f16Bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) { return sign | 0x7f800000u | (mantissa << 13u); } // ±Inf, NaN
  if (exponent == 0u) { // subnormal: mantissa * 2^-24, exact
    return sign | bitcast<u32>(f32(mantissa) * 5.9604644775390625e-8);
  }
  return sign | ((exponent + 112u) << 23u) | (mantissa << 13u);
}

// The clipping factor and the norm follow from the flags, never from arithmetic on NaN or Infinity:
// - an element NaN: norm NaN, factor NaN (PyTorch's clip_grad_norm_: a NaN norm gives a NaN factor);
// - an element ±Infinity, or the sum of squares reached 2^126 (HUGE: a norm of 2^63 ~ 9.2e18 or
//   more): norm +Infinity, factor exactly 0 (PyTorch: max_norm / (inf + 1e-6) = 0, clamped: 0);
// - else norm = sqrt(sum) and factor (1 / (norm + 1e-6)) * maxNorm clamped at 1, as PyTorch rounds it.
// `bad` (what SKIP_NON_FINITE skips on) is an element NaN or ±Infinity, or, when clipping, HUGE: the
// clipped step would be a step with zero gradients.
@compute @workgroup_size(WORKGROUP_SIZE)
fn finish(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var found = 0u;
  for (var k = lid; k < finishing.partialCount; k += WORKGROUP_SIZE) {
    s = addSq(s, partials[k].sumSq, &found);
    found = found | partials[k].flags;
  }
  let total = workgroupSum(lid, s, found);
  if (lid == 0u) {
    let f = total.flags;
    let clipping = finishing.maxNorm > 0.0;
    let norm = sqrt(total.sumSq);
    var scale = 1.0;
    if (clipping) {
      let c = (1.0 / (norm + 1e-6)) * finishing.maxNorm;
      scale = select(c, 1.0, c >= 1.0);
    }
    var normBits = bitcast<u32>(norm);
    var scaleBits = bitcast<u32>(scale);
    if ((f & (INF_SEEN | HUGE)) != 0u) {
      normBits = 0x7f800000u; // +Infinity
      scaleBits = select(0x3f800000u, 0u, clipping); // 0 (1 without clipping)
    }
    if ((f & NAN_SEEN) != 0u) {
      normBits = 0x7fc00000u; // NaN
      scaleBits = select(0x3f800000u, 0x7fc00000u, clipping);
    }
    let bad = (f & (INF_SEEN | NAN_SEEN)) != 0u || (clipping && (f & HUGE) != 0u);
    control.bad = select(0u, 1u, bad);
    control.norm = normBits;
    control.scale = scaleBits;
    if (finishing.countSkip != 0u && bad) { control.skipped = control.skipped + 1u; }
  }
}
