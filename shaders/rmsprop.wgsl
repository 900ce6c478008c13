// RMSProp, one fused pass: each element's parameter, gradient and state are read once and
// written once. The CPU twin of this file is src/rule/reference.ts; keep the two line for line.
//
// The variant is fixed when the pipeline is made (override constants), so a variant's unused
// state is never read or written and its branches compile away. Nothing about a tensor's shape or
// a group's constant hyperparameters changes after the optimizer is made: they live in `geo`,
// written once. What may change per step (lr, the decoupled decay factor, bias correction) lives
// per param group in a cell of a slot of a small ring, `now`, that each step selects with a dynamic
// offset (src/gpu/step-values.ts): no copy command per step, and each step reads the values it was
// recorded with. `now` is a uniform of fixed size at that offset, not an entry of a runtime-sized
// array indexed per invocation: SwiftShader charged that indexed load in every invocation
// (docs/benchmarks.md, "Step cost"). The update binds nothing that another dispatch of the step
// writes, so the GPU may overlap them: a step's count for the ring is a dispatch of its own (countStep).
//
// Layout of one dispatch unit (a whole tensor, or one chunk of a tensor past the binding limit):
//   param, grad  the caller's buffers as vec4s: the first `count4 * 4` elements (the body);
//   paramTail, gradTail  the same buffers bound from a 256-byte aligned offset at or below the
//                end of the body, holding the last 1 to 3 elements at [tailStart, tailStart + tailCount);
//   state        slots of `slotStride` vec4s each: v, then m if CENTERED, then b if MOMENTUM.
//                The tail's elements live in lanes of the vec4 at `count4`; lanes past the tail
//                are padding and are never written.
//   gradPacked, gradTailPacked  instead of grad and gradTail when GRAD_DTYPE is 1 (f16) or 2 (bf16):
//                two 16-bit values per u32, decoded exactly (entry points stepBodyPacked, stepTailPacked).
//   paramPacked, paramTailPacked  instead of param and paramTail when PARAM_DTYPE is 1 (f16) or 2
//                (bf16): two 16-bit values per u32 (entry points stepBodyHalf*, stepTailHalf*). The
//                tail (1 to 3 elements) starts at word geo.gradTailStart; with an odd count its last
//                word's high half is not the tensor's and is written back as it was read.
//                With MASTER, the f32 master copy is the last state slot: the update reads and writes
//                it, and stores its rounded value into paramPacked (initMasterBody, initMasterTail fill it).
//   control      what shaders/grad-norm.wgsl found this step (SKIP_NON_FINITE, CLIP).
//
// Rounding. WGSL lets `sqrt` and division be off by a few ULPs, lets each `fma` call round once or
// twice, and lets a compiler contract a plain `a * b + c` into a fused multiply-add (Tint marks
// nothing NoContraction). The shader writes `fma` where PyTorch's CPU kernels fuse, so that an
// implementation that honours it (SwiftShader and lavapipe, measured) matches the reference bit
// for bit; elsewhere the tests allow the bound derived in test/gpu/harness.ts.

override WORKGROUP_SIZE: u32 = 256u;
override CENTERED: bool = false;       // normalize by v - m*m (clamped at 0) instead of v
override MOMENTUM: bool = false;       // momentum > 0: keep a momentum buffer b
override LR_IN_MOMENTUM: bool = false; // b += lr*g/den; p -= b   (else b += g/den; p -= lr*b)
override EPS_INSIDE: bool = false;     // sqrt(d + eps)            (else sqrt(d) + eps)
override MAXIMIZE: bool = false;       // ascend: g = -g
override WEIGHT_DECAY: bool = false;   // L2: g += weightDecay * p
override DECOUPLED_DECAY: bool = false; // AdamW: p *= 1 - lr * weightDecay, before the step
override NESTEROV: bool = false;       // step by g/den + momentum * b (MOMENTUM only)
override BIAS_CORRECTION: bool = false; // Optax: v (and m) divided by 1 - alpha^t before the root
override SKIP_NON_FINITE: bool = false; // leave everything unchanged when control.bad (grad-norm.wgsl)
override CLIP: bool = false;           // g *= control.scale (global-norm clipping, grad-norm.wgsl)
override UNSCALE: bool = false;        // g *= geo.unscale (1 / lossScale), first
override GRAD_DTYPE: u32 = 0u;         // 0: f32 (stepBody, stepTail); 1: f16, 2: bf16 (stepBodyPacked, stepTailPacked)
override PARAM_DTYPE: u32 = 0u;        // 0: f32; 1: f16, 2: bf16 (stepBodyHalf*, stepTailHalf*)
override MASTER: bool = false;         // PARAM_DTYPE 1, 2: an f32 master copy in the last state slot

// A dispatch unit's shape and its group's constant hyperparameters, written once (src/gpu/update-pass.ts).
struct Geometry {
  count4: u32,         // whole vec4s in the body
  slotStride: u32,     // vec4s in each state slot
  tailStart: u32,      // index of the first tail element in paramTail and gradTail
  tailCount: u32,      // 0 to 3
  gradTailStart: u32,  // GRAD_DTYPE 1, 2: the tail's word in gradTailPacked; PARAM_DTYPE 1, 2: in paramTailPacked
  alpha: f32,
  oneMinusAlpha: f32,  // 1 - alpha rounded once on the host, as PyTorch passes it
  eps: f32,
  momentum: f32,
  weightDecay: f32,
  unscale: f32,        // 1 / lossScale, rounded once on the host (UNSCALE)
}

// The values of one param group that may change per step, each rounded once on the host: one cell
// of a slot of the ring, which also names its slot (for countStep).
struct StepGroup {
  lr: f32,
  decayFactor: f32,    // 1 - lr * weightDecay (DECOUPLED_DECAY)
  biasCorrection: f32, // 1 - alpha^t in f32, as Optax (BIAS_CORRECTION)
  slot: u32,           // the slot's index in its page of the ring
}

// Written by shaders/grad-norm.wgsl's `finish` earlier in the same pass (bound always; read only
// when SKIP_NON_FINITE or CLIP), as a uniform: read in every invocation, as `now`.
struct Control {
  bad: u32,     // some gradient element of this step is NaN or ±Inf
  scale: f32,   // the clipping factor min(1, maxNorm / (norm + 1e-6))
  norm: f32,    // the global gradient norm
  skipped: u32, // steps skipped so far
}

@group(0) @binding(0) var<uniform> geo: Geometry;
@group(0) @binding(1) var<storage, read_write> param: array<vec4f>;
// Gradients are only read, but bound read_write so that they may share a buffer with the
// parameters (a parameter arena): WebGPU forbids one buffer as read-only and writable storage in
// the same dispatch.
@group(0) @binding(2) var<storage, read_write> grad: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> state: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> paramTail: array<f32>;
@group(0) @binding(5) var<storage, read_write> gradTail: array<f32>;
@group(0) @binding(6) var<uniform> control: Control;
// 16-bit gradients (GRAD_DTYPE 1, 2), two per u32: the body's 4 elements per vec2u, the tail (1 to 3
// elements) in one or two words (packedTailGrad).
@group(0) @binding(7) var<storage, read_write> gradPacked: array<vec2u>;
@group(0) @binding(8) var<storage, read_write> gradTailPacked: array<u32>;
// 16-bit parameters (PARAM_DTYPE 1, 2), two per u32, laid out as gradPacked and gradTailPacked (the
// tail: 1 or 2 words).
@group(0) @binding(9) var<storage, read_write> paramPacked: array<vec2u>;
@group(0) @binding(10) var<storage, read_write> paramTailPacked: array<u32>;
// This dispatch's param group's values in the step's slot of the ring, at the dynamic offset the
// step recorded (the slot's and the group's cell).
@group(1) @binding(0) var<uniform> now: StepGroup;
// countStep's bindings: a cell of the step's slot, and how many steps have run with each slot of its
// page, so that the host reuses a slot only once its steps are done.
@group(0) @binding(11) var<uniform> counted: StepGroup;
@group(0) @binding(12) var<storage, read_write> ran: array<atomic<u32>>;

// Counts the step as run with its slot: one invocation, one dispatch a step, after the update in
// the same pass. The only dispatch of a step that writes `ran`.
@compute @workgroup_size(1)
fn countStep() {
  atomicAdd(&ran[counted.slot], 1u);
}

// Four elements' parameter and state, in registers.
struct Lanes {
  p: vec4f,
  v: vec4f,
  m: vec4f,
  b: vec4f,
}

// The update rule on four elements at once.
fn update(e: ptr<function, Lanes>, gradient: vec4f) {
  let lr = now.lr;
  if (DECOUPLED_DECAY) { (*e).p = (*e).p * now.decayFactor; }
  var g = gradient;
  if (UNSCALE) { g = g * geo.unscale; }
  if (CLIP) { g = g * control.scale; }
  if (MAXIMIZE) { g = -g; }
  // fma where PyTorch's CPU kernels fuse (see Rounding at the top).
  if (WEIGHT_DECAY) { g = fma((*e).p, vec4f(geo.weightDecay), g); }
  let alpha = geo.alpha; // read once: CENTERED uses both twice (see Slots)
  let oneMinusAlpha = geo.oneMinusAlpha;
  (*e).v = fma(oneMinusAlpha * g, g, alpha * (*e).v);
  var d = (*e).v;
  if (BIAS_CORRECTION) { d = d / now.biasCorrection; }
  if (CENTERED) {
    (*e).m = fma(g, vec4f(oneMinusAlpha), alpha * (*e).m);
    var mh = (*e).m;
    if (BIAS_CORRECTION) { mh = mh / now.biasCorrection; }
    d = max(fma(-mh, mh, d), vec4f(0.0));
  }
  var den: vec4f;
  if (EPS_INSIDE) { den = sqrt(d + geo.eps); } else { den = sqrt(d) + geo.eps; }
  if (MOMENTUM) {
    if (LR_IN_MOMENTUM) {
      let u = (lr * g) / den;
      (*e).b = geo.momentum * (*e).b + u;
      var s = (*e).b;
      if (NESTEROV) { s = u + geo.momentum * (*e).b; }
      (*e).p = (*e).p - s;
    } else {
      let q = g / den;
      (*e).b = geo.momentum * (*e).b + q;
      var s = (*e).b;
      if (NESTEROV) { s = fma((*e).b, vec4f(geo.momentum), q); }
      (*e).p = fma(s, vec4f(-lr), (*e).p);
    }
  } else {
    (*e).p = (*e).p - (lr * g) / den;
  }
}

// The whole step is skipped: a gradient element is not finite (SKIP_NON_FINITE).
fn skipped() -> bool {
  return SKIP_NON_FINITE && control.bad != 0u;
}

// Where vec4 i's state lives: v at i, then m (CENTERED), b (MOMENTUM) and the f32 master copy
// (MASTER) a slot apart, each only where used. geo.slotStride is read once: read per slot (with
// alpha read twice), SwiftShader's centered momentum step was 10-15% slower than the same rule
// written inline (npm run bench:probe); read once, it is as fast.
struct Slots { v: u32, m: u32, b: u32, master: u32 }

fn slotsOf(i: u32) -> Slots {
  let stride = geo.slotStride;
  let m = i + stride;
  let b = select(m, m + stride, CENTERED);
  let master = select(b, b + stride, MOMENTUM);
  return Slots(i, m, b, master);
}

fn loadState(e: ptr<function, Lanes>, at: Slots) {
  (*e).v = state[at.v];
  if (CENTERED) { (*e).m = state[at.m]; }
  if (MOMENTUM) { (*e).b = state[at.b]; }
  if (MASTER) { (*e).p = state[at.master]; }
}

fn storeState(e: ptr<function, Lanes>, at: Slots) {
  state[at.v] = (*e).v;
  if (CENTERED) { state[at.m] = (*e).m; }
  if (MOMENTUM) { state[at.b] = (*e).b; }
  if (MASTER) { state[at.master] = (*e).p; }
}

// The body: one vec4 per invocation. Dispatches wider than maxComputeWorkgroupsPerDimension
// are spread over a 2-D grid, so the linear index folds in y.
@compute @workgroup_size(WORKGROUP_SIZE)
fn stepBody(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= geo.count4 || skipped()) { return; }
  bodyStep(i, grad[i]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn stepBodyPacked(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= geo.count4 || skipped()) { return; }
  let w = gradPacked[i];
  bodyStep(i, vec4f(unpackHalves(w.x), unpackHalves(w.y)));
}

fn bodyStep(i: u32, g: vec4f) {
  var e: Lanes;
  let slots = slotsOf(i);
  e.p = param[i];
  loadState(&e, slots);
  update(&e, g);
  param[i] = e.p;
  storeState(&e, slots);
}

// The two 16-bit floats of a word (low half first), exactly, by bit operations (WGSL's
// unpack2x16float may flush f16 subnormals).
fn unpackHalves(w: u32) -> vec2f {
  return decodeWord(w, GRAD_DTYPE);
}

fn decodeWord(w: u32, dtype: u32) -> vec2f {
  if (dtype == 2u) { return vec2f(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }
  return vec2f(f16ToF32(w & 0xffffu), f16ToF32(w >> 16u));
}

// Two parameters rounded to PARAM_DTYPE, in one word (low half first). By bit operations, not
// pack2x16float, whose rounding WGSL leaves open. src/rule/half.ts f32ToF16 and f32ToBf16 are the twins.
fn encodeWord(p: vec2f) -> u32 {
  if (PARAM_DTYPE == 2u) { return f32ToBf16(p.x) | (f32ToBf16(p.y) << 16u); }
  return f32ToF16(p.x) | (f32ToF16(p.y) << 16u);
}

// Round to nearest, ties to even, keeping the high 16 bits; NaN to 0x7fc0 (rounding could carry a
// NaN's payload into Infinity).
fn f32ToBf16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0x7fc0u; }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// Round to nearest, ties to even: 65520 (65504 + half an ULP) and above to ±Infinity, below 2^-14
// to a subnormal (or ±0), NaN to 0x7e00.
fn f32ToF16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return 0x7e00u; }
  if (a >= 0x477ff000u) { return sign | 0x7c00u; }
  if (a >= 0x38800000u) { // normal: rebias the exponent (127 - 15 = 112), round off 13 mantissa bits
    let r = a - 0x38000000u;
    return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
  }
  // Subnormal: the significand (implicit bit included) shifted down to units of 2^-24, rounded to
  // even; a carry to 0x400 is the smallest normal, as it should be. Below 2^-25 (and f32 subnormals): 0.
  let exponent = a >> 23u;
  if (exponent < 102u) { return sign; }
  let significand = (a & 0x7fffffu) | 0x800000u;
  let shift = 126u - exponent; // 14 to 24
  let q = significand >> shift;
  let rest = significand & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  return sign | (q + select(0u, 1u, rest > half || (rest == half && (q & 1u) == 1u)));
}

// 16-bit parameters: the body. Without MASTER the update reads the 16-bit values; with it, the f32
// master copy (loadState); either way the caller's buffer gets the result rounded.
@compute @workgroup_size(WORKGROUP_SIZE)
fn stepBodyHalf(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= geo.count4 || skipped()) { return; }
  halfBodyStep(i, grad[i]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn stepBodyHalfPacked(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= geo.count4 || skipped()) { return; }
  let w = gradPacked[i];
  halfBodyStep(i, vec4f(unpackHalves(w.x), unpackHalves(w.y)));
}

fn halfBodyStep(i: u32, g: vec4f) {
  var e: Lanes;
  let slots = slotsOf(i);
  loadState(&e, slots);
  if (!MASTER) {
    let w = paramPacked[i];
    e.p = vec4f(decodeWord(w.x, PARAM_DTYPE), decodeWord(w.y, PARAM_DTYPE));
  }
  update(&e, g);
  paramPacked[i] = vec2u(encodeWord(e.p.xy), encodeWord(e.p.zw));
  storeState(&e, slots);
}

// 16-bit parameters: the tail of 1 to 3 elements in one or two words, by one invocation, so the
// read-modify-write of a half-used last word races with nothing.
@compute @workgroup_size(1)
fn stepTailHalf() {
  if (skipped()) { return; }
  var g = vec4f(0.0);
  for (var k = 0u; k < geo.tailCount; k++) { g[k] = gradTail[geo.tailStart + k]; }
  halfTailStep(g);
}

@compute @workgroup_size(1)
fn stepTailHalfPacked() {
  if (skipped()) { return; }
  halfTailStep(packedTailGrad());
}

fn halfTailStep(g: vec4f) {
  let at = geo.gradTailStart;
  let twoWords = geo.tailCount > 2u;
  var old = vec2u(paramTailPacked[at], 0u);
  if (twoWords) { old.y = paramTailPacked[at + 1u]; }
  var e: Lanes;
  let slots = slotsOf(geo.count4);
  loadState(&e, slots);
  if (!MASTER) { e.p = vec4f(decodeWord(old.x, PARAM_DTYPE), decodeWord(old.y, PARAM_DTYPE)); }
  let before = e;
  update(&e, g);
  let live = vec4u(0u, 1u, 2u, 3u) < vec4u(geo.tailCount);
  e.p = select(before.p, e.p, live);
  e.v = select(before.v, e.v, live);
  e.m = select(before.m, e.m, live);
  e.b = select(before.b, e.b, live);
  var w = vec2u(encodeWord(e.p.xy), encodeWord(e.p.zw));
  // An odd count: the last word's high half is not this tensor's; it goes back bit for bit.
  if (geo.tailCount == 1u) { w.x = (w.x & 0xffffu) | (old.x & 0xffff0000u); }
  if (geo.tailCount == 3u) { w.y = (w.y & 0xffffu) | (old.y & 0xffff0000u); }
  paramTailPacked[at] = w.x;
  if (twoWords) { paramTailPacked[at + 1u] = w.y; }
  storeState(&e, slots);
}

// MASTER: the master copy from the caller's 16-bit parameters, once, when the optimizer is made.
@compute @workgroup_size(WORKGROUP_SIZE)
fn initMasterBody(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= geo.count4) { return; }
  let w = paramPacked[i];
  state[slotsOf(i).master] = vec4f(decodeWord(w.x, PARAM_DTYPE), decodeWord(w.y, PARAM_DTYPE));
}

@compute @workgroup_size(1)
fn initMasterTail() {
  let at = geo.gradTailStart;
  var p = vec4f(decodeWord(paramTailPacked[at], PARAM_DTYPE), 0.0, 0.0);
  if (geo.tailCount > 2u) { p = vec4f(p.xy, decodeWord(paramTailPacked[at + 1u], PARAM_DTYPE)); }
  // Lanes past the tail (padding, and an odd count's neighbouring half) stay 0.
  state[slotsOf(geo.count4).master] = select(vec4f(0.0), p, vec4u(0u, 1u, 2u, 3u) < vec4u(geo.tailCount));
}

fn f16ToF32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) { return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u)); } // ±Inf, NaN
  if (exponent == 0u) { // subnormal: mantissa * 2^-24, exact
    let magnitude = f32(mantissa) * 5.9604644775390625e-8;
    return select(magnitude, -magnitude, sign != 0u);
  }
  return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

// The tail: the last 1 to 3 elements of a tensor whose length is not a multiple of 4, as the
// lanes of one vec4. Lanes past the tail compute on zeros and are not stored.
@compute @workgroup_size(1)
fn stepTail() {
  if (skipped()) { return; }
  var g = vec4f(0.0);
  for (var k = 0u; k < geo.tailCount; k++) { g[k] = gradTail[geo.tailStart + k]; }
  tailStep(g);
}

@compute @workgroup_size(1)
fn stepTailPacked() {
  if (skipped()) { return; }
  tailStep(packedTailGrad());
}

// The 1 to 3 tail gradients of GRAD_DTYPE 1, 2, lanes past the tail 0 (an odd count's last word's
// high half is not the tensor's).
fn packedTailGrad() -> vec4f {
  var g = vec4f(unpackHalves(gradTailPacked[geo.gradTailStart]), 0.0, 0.0);
  if (geo.tailCount > 2u) { g = vec4f(g.xy, unpackHalves(gradTailPacked[geo.gradTailStart + 1u])); }
  return select(vec4f(0.0), g, vec4u(0u, 1u, 2u, 3u) < vec4u(geo.tailCount));
}

fn tailStep(g: vec4f) {
  var e: Lanes;
  for (var k = 0u; k < geo.tailCount; k++) { e.p[k] = paramTail[geo.tailStart + k]; }
  let slots = slotsOf(geo.count4);
  loadState(&e, slots);
  let before = e;
  update(&e, g);
  let live = vec4u(0u, 1u, 2u, 3u) < vec4u(geo.tailCount);
  e.v = select(before.v, e.v, live);
  e.m = select(before.m, e.m, live);
  e.b = select(before.b, e.b, live);
  for (var k = 0u; k < geo.tailCount; k++) {
    paramTail[geo.tailStart + k] = e.p[k];
  }
  storeState(&e, slots);
}

// ---------------------------------------------------------------------------------------------
// 8-bit blockwise state (stateDtype 'int8-blockwise'): bitsandbytes' format. Its CPU twin is
// src/rule/blockwise8.ts; docs/blockwise8.md says which bitsandbytes rule each part follows.
//
// Blocks of 4 * BLOCK_VEC4S = 256 elements; a chunk's body and tail in one dispatch. Each element:
// dequantize v = map[code] * absmax, the same `update` as the f32 state, then the block's new
// absmax = max |v| and each v / absmax stored as its nearest code (bitsandbytes' binary search's
// code, `quantizeCode`). The parameter update uses the new v before it is quantized, as bitsandbytes'
// kernel does. Two layouts of the same arithmetic, with the same results bit for bit; the host picks
// one per adapter (src/gpu/blockwise8-layout.ts):
// - 'workgroup' (a GPU): one invocation per 4 elements, BLOCKS_PER_WORKGROUP blocks a workgroup, the
//   absmax by an atomicMax in workgroup memory and one barrier (stepBlockwise8, whose chunk is whole
//   vec4s and loads them as vec4s; stepBlockwise8Scalar for any chunk);
// - 'lanes' (a CPU adapter): one invocation per block, no barrier, the block's new v kept in the
//   invocation between its two loops (stepBlockwise8Lanes). A CPU driver runs a workgroup's
//   invocations as SIMD groups that it must switch between at every barrier: this layout made the
//   step 2.5-4x faster on SwiftShader, 1.2-1.5x on lavapipe (docs/benchmarks.md, "8-bit state").
//
// Bindings: stateCodes holds the chunk's codes, 4 per u32 (element 4w + k in byte k of word w),
// BLOCK_VEC4S words per block, then from word geo.slotStride one absmax per block (f32 bits);
// dynamicMap the map's 256 values and the quantizer's tables (written by the host). param and grad
// (stepBlockwise8) or paramTail and gradTail (the others, as array<f32>, so that a chunk whose count
// is not a multiple of 4 needs no second binding that would alias them) bind the whole chunk.
// ---------------------------------------------------------------------------------------------

@group(0) @binding(13) var<storage, read_write> stateCodes: array<u32>;
// The quantizer's tables, written once by the host (src/gpu/update-pass.ts quantizerTables): the map's
// 256 values, and per bucket of |x| its code c0 (src/rule/blockwise8.ts BUCKET_CODES) and, as f32 bits,
// the threshold above which |x| takes c0 + 1 (BUCKET_THRESHOLD_BITS: the midpoint (map[c0] + map[c0 + 1]) * 0.5,
// or the f32 below it where a tie goes to c0 + 1), so that one look-up gives both. Read-only storage, not a
// uniform: each invocation indexes it by its own code, and a uniform read by a per-invocation index
// cost SwiftShader 2-3x the whole step (docs/benchmarks.md); a GPU's constant cache serializes such
// reads too, where storage goes through its ordinary cache.
struct DynamicMap {
  values: array<f32, 256>,
  buckets: array<vec2u, BUCKETS>,
}
@group(0) @binding(14) var<storage, read> dynamicMap: DynamicMap;

// vec4s per block of 8-bit state: 256 elements (src/rule/blockwise8.ts BLOCK_SIZE / 4, checked by
// test/unit/blockwise8.test.ts).
const BLOCK_VEC4S: u32 = 64u;
// Blocks per workgroup of the 'workgroup' layout: 256 invocations, as the f32 entry points have; and of
// the 'lanes' layout, one an invocation. src/gpu/blockwise8-layout.ts has the same (checked by the same
// test); the first sizes a workgroup array.
const BLOCKS_PER_WORKGROUP: u32 = 4u;
const LANE_BLOCKS_PER_WORKGROUP: u32 = 64u;
const ZERO_CODE: u32 = 127u; // the code of 0: a block whose absmax is 0, and padding past the tensor
// Buckets of |x|: its f32 bits >> 17 (exponent and 6 mantissa bits), clamped to [BUCKET_LOW, BUCKET_HIGH]
// (2^-22, below the first midpoint above 0, to 1.0); src/rule/blockwise8.ts has the same (checked by
// test/unit/blockwise8.test.ts).
const BUCKET_LOW: u32 = 6720u;
const BUCKET_HIGH: u32 = 8128u;
const BUCKETS: u32 = 1409u; // BUCKET_HIGH - BUCKET_LOW + 1

// The block's largest |v| as u32 bits: for floats >= 0 (|v|, +0 included) the bits order as the
// values do, so an atomicMax finds the max exactly, with one barrier. Zero at the workgroup's start.
var<workgroup> blockMaxBits: array<atomic<u32>, BLOCKS_PER_WORKGROUP>;

fn mapValue(code: u32) -> f32 {
  return dynamicMap.values[code];
}

// Four elements' v from their codes (one u32) and their block's absmax.
fn dequantizeWord(word: u32, absmax: f32) -> vec4f {
  let codes = (vec4u(word) >> vec4u(0u, 8u, 16u, 24u)) & vec4u(0xffu);
  return vec4f(mapValue(codes.x), mapValue(codes.y), mapValue(codes.z), mapValue(codes.w)) * absmax;
}

// Four elements' v as codes in one u32, for their block's new absmax; ZERO_CODE where absmax is 0 and
// for lanes that are not elements of the chunk (padding).
fn quantizeWord(v: vec4f, absmax: f32, live: vec4<bool>) -> u32 {
  var q = vec4u(ZERO_CODE);
  if (absmax > 0.0) {
    q = vec4u(quantizeCode(v.x / absmax), quantizeCode(v.y / absmax), quantizeCode(v.z / absmax),
      quantizeCode(v.w / absmax));
    q = select(vec4u(ZERO_CODE), q, live);
  }
  return q.x | (q.y << 8u) | (q.z << 16u) | (q.w << 24u);
}

// The largest of four |v| (lanes not live count as 0), as u32 bits: for floats >= 0 (+0 included) the
// bits order as the values do, so a u32 max over them is the float max, and both layouts find it alike.
fn largestMagnitudeBits(v: vec4f, live: vec4<bool>) -> u32 {
  let a = select(vec4f(0.0), abs(v), live);
  return bitcast<u32>(max(max(a.x, a.y), max(a.z, a.w)));
}

// Which lanes of vec4 i (elements 4i to 4i + 3) are elements of a chunk of `count`.
fn liveLanes(i: u32, count: u32) -> vec4<bool> {
  return vec4u(i * 4u) + vec4u(0u, 1u, 2u, 3u) < vec4u(count);
}

// bitsandbytes' quantize_2D<1> without stochastic rounding (a binary search from code 127, then the
// nearer of the last value and its neighbour by their f32 midpoint; the twin's quantizeCode), computed
// without the search: the same code for every f32 (docs/blockwise8.md, "The shader's quantizer"; the
// twin's quantizeCodeBuckets is this function, checked against the search for every f32 in [-1, 1]).
// The code c0 of |x|'s bucket (each bucket holds at most one midpoint), plus one if |x| is above the
// bucket's threshold: the midpoint of c0 and c0 + 1, ties to the even code (the search lands on even
// codes only). Negative x: the mirror code 254 - c (the map and midpoints are symmetric about 127),
// 0 for c = 255.
fn quantizeCode(x: f32) -> u32 {
  let magnitude = bitcast<u32>(x) & 0x7fffffffu;
  let bucket = clamp(magnitude >> 17u, BUCKET_LOW, BUCKET_HIGH) - BUCKET_LOW;
  let entry = dynamicMap.buckets[bucket]; // its code c0, its threshold's bits
  let c = min(entry.x + u32(magnitude > entry.y), 255u); // as bits: floats >= 0 order so; 255: +inf
  return select(c, max(254u, c) - c, (bitcast<u32>(x) >> 31u) == 1u);
}

// The invocation's block and vec4 (elements 4i to 4i + 3): a workgroup updates BLOCKS_PER_WORKGROUP
// blocks, and a grid wider than maxComputeWorkgroupsPerDimension folds y into the index.
fn blockwise8Index(wg: vec3u, groups: vec3u, lane: u32) -> u32 {
  return (wg.x + wg.y * groups.x) * BLOCK_VEC4S * BLOCKS_PER_WORKGROUP + lane;
}

// Whether vec4 i's block holds elements of the chunk: a whole block is in or out.
fn blockInRange(i: u32, count: u32) -> bool {
  return i / BLOCK_VEC4S < (count + 4u * BLOCK_VEC4S - 1u) / (4u * BLOCK_VEC4S);
}

// What both entry points share: dequantize v, the update (e holds p, g the gradient), the block's new
// absmax (one barrier), then v requantized into stateCodes. `live` marks the lanes that are elements of
// the chunk; the caller stores e.p where they are. Called in uniform control flow (the barrier).
fn blockwise8Update(e: ptr<function, Lanes>, g: vec4f, i: u32, lane: u32, live: vec4<bool>, inRange: bool) {
  let inGroup = lane / BLOCK_VEC4S; // this invocation's block within the workgroup
  let block = i / BLOCK_VEC4S;
  var word = ZERO_CODE * 0x01010101u;
  var scale = 0.0;
  if (inRange) {
    word = stateCodes[i];
    scale = bitcast<f32>(stateCodes[geo.slotStride + block]);
  }
  (*e).v = dequantizeWord(word, scale);
  update(e, g);
  atomicMax(&blockMaxBits[inGroup], largestMagnitudeBits((*e).v, live));
  workgroupBarrier();
  if (!inRange) { return; }
  let absmax = bitcast<f32>(atomicLoad(&blockMaxBits[inGroup]));
  if (lane % BLOCK_VEC4S == 0u) { stateCodes[geo.slotStride + block] = bitcast<u32>(absmax); }
  stateCodes[i] = quantizeWord((*e).v, absmax, live);
}

// A chunk of whole vec4s (its count a multiple of 4, geo.tailCount 0): parameters and gradients as
// vec4s (param, grad), one load and one store each.
@compute @workgroup_size(BLOCK_VEC4S * BLOCKS_PER_WORKGROUP)
fn stepBlockwise8(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) lane: u32,
) {
  // Uniform (the control buffer), so the barrier stays in uniform control flow.
  if (skipped()) { return; }
  let i = blockwise8Index(wg, groups, lane);
  let inTensor = i < geo.count4;
  var e: Lanes;
  var g = vec4f(0.0);
  if (inTensor) {
    e.p = param[i];
    g = grad[i];
  }
  blockwise8Update(&e, g, i, lane, vec4<bool>(inTensor), blockInRange(i, geo.count4 * 4u));
  if (inTensor) { param[i] = e.p; }
}

// Vec4 i's parameters (into e.p) and gradients (returned) from paramTail and gradTail, for a chunk of
// `count` elements: four loads where the vec4 is whole, else only its live lanes (the rest 0).
fn loadChunkElements(i: u32, count: u32, e: ptr<function, Lanes>) -> vec4f {
  let at = i * 4u;
  if (i < geo.count4) {
    (*e).p = vec4f(paramTail[at], paramTail[at + 1u], paramTail[at + 2u], paramTail[at + 3u]);
    return vec4f(gradTail[at], gradTail[at + 1u], gradTail[at + 2u], gradTail[at + 3u]);
  }
  let live = liveLanes(i, count);
  var g = vec4f(0.0);
  for (var k = 0u; k < 4u; k++) {
    if (live[k]) {
      (*e).p[k] = paramTail[at + k];
      g[k] = gradTail[at + k];
    }
  }
  return g;
}

// Vec4 i's parameters back into paramTail: only the lanes that are elements of the chunk.
fn storeChunkElements(i: u32, count: u32, p: vec4f) {
  let at = i * 4u;
  if (i < geo.count4) {
    paramTail[at] = p.x;
    paramTail[at + 1u] = p.y;
    paramTail[at + 2u] = p.z;
    paramTail[at + 3u] = p.w;
    return;
  }
  let live = liveLanes(i, count);
  for (var k = 0u; k < 4u; k++) {
    if (live[k]) { paramTail[at + k] = p[k]; }
  }
}

// Any chunk (a count that is not a multiple of 4): parameters and gradients element by element
// (paramTail, gradTail bind the whole chunk as f32s, so that no vec4 binding aliases them).
@compute @workgroup_size(BLOCK_VEC4S * BLOCKS_PER_WORKGROUP)
fn stepBlockwise8Scalar(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) lane: u32,
) {
  if (skipped()) { return; }
  let i = blockwise8Index(wg, groups, lane);
  let count = geo.count4 * 4u + geo.tailCount;
  var e: Lanes;
  let g = loadChunkElements(i, count, &e);
  blockwise8Update(&e, g, i, lane, liveLanes(i, count), blockInRange(i, count));
  storeChunkElements(i, count, e.p);
}

// The 'lanes' layout (a CPU adapter), any chunk: invocation `block` updates its whole block in two
// loops, the first updating parameters and v (kept in `v`) and finding the absmax, the second storing
// the codes, so that no invocation waits for another. The loops count j from 0, the same in every
// invocation, so that a CPU driver indexes `v` alike in all its SIMD lanes. Recomputing v in the
// second loop instead of keeping it was no faster on either driver.
@compute @workgroup_size(LANE_BLOCKS_PER_WORKGROUP)
fn stepBlockwise8Lanes(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  if (skipped()) { return; }
  let block = id.x + id.y * groups.x * LANE_BLOCKS_PER_WORKGROUP;
  let count = geo.count4 * 4u + geo.tailCount;
  let first = block * BLOCK_VEC4S;
  let end = min(first + BLOCK_VEC4S, (count + 3u) / 4u);
  if (first >= end) { return; }
  let scale = bitcast<f32>(stateCodes[geo.slotStride + block]);
  var v: array<vec4f, BLOCK_VEC4S>;
  var largest = 0u;
  for (var j = 0u; j < end - first; j++) {
    let i = first + j;
    var e: Lanes;
    let g = loadChunkElements(i, count, &e);
    e.v = dequantizeWord(stateCodes[i], scale);
    update(&e, g);
    storeChunkElements(i, count, e.p);
    v[j] = e.v;
    largest = max(largest, largestMagnitudeBits(e.v, liveLanes(i, count)));
  }
  stateCodes[geo.slotStride + block] = largest;
  let absmax = bitcast<f32>(largest);
  for (var j = 0u; j < end - first; j++) {
    stateCodes[first + j] = quantizeWord(v[j], absmax, liveLanes(first + j, count));
  }
}
