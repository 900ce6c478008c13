// RMSProp, one fused pass: each element's parameter, gradient and state are read once and
// written once. The CPU twin of this file is src/reference.ts; keep the two line for line.
//
// The variant is fixed when the pipeline is made (override constants), so a variant's unused
// state is never read or written and its branches compile away. Hyperparameters live in a
// uniform, so a new learning rate rebuilds nothing.
//
// Layout of one dispatch unit (a whole tensor, or one chunk of a tensor past the binding limit):
//   param, grad  the caller's buffers as vec4s: the first `count4 * 4` elements (the body);
//   paramTail, gradTail  the same buffers bound from a 256-byte aligned offset at or below the
//                end of the body, holding the last 1 to 3 elements at [tailStart, tailStart + tailCount);
//   state        slots of `slotStride` vec4s each: v, then m if CENTERED, then b if MOMENTUM.
//                The tail's elements live in lanes of the vec4 at `count4`; lanes past the tail
//                are padding and are never written.

override WORKGROUP_SIZE: u32 = 256u;
override CENTERED: bool = false;       // normalize by v - m*m (clamped at 0) instead of v
override MOMENTUM: bool = false;       // momentum > 0: keep a momentum buffer b
override LR_IN_MOMENTUM: bool = false; // b += lr*g/den; p -= b   (else b += g/den; p -= lr*b)
override EPS_INSIDE: bool = false;     // sqrt(d + eps)            (else sqrt(d) + eps)
override MAXIMIZE: bool = false;       // ascend: g = -g
override WEIGHT_DECAY: bool = false;   // L2: g += weightDecay * p

struct Hyper {
  lr: f32,
  alpha: f32,
  oneMinusAlpha: f32,  // 1 - alpha rounded once on the host, as PyTorch passes it
  eps: f32,
  momentum: f32,
  weightDecay: f32,
  count4: u32,         // whole vec4s in the body
  slotStride: u32,     // vec4s in each state slot
  tailStart: u32,      // index of the first tail element in paramTail and gradTail
  tailCount: u32,      // 0 to 3
}

@group(0) @binding(0) var<uniform> hp: Hyper;
@group(0) @binding(1) var<storage, read_write> param: array<vec4f>;
// Gradients are only read, but bound read_write so that they may share a buffer with the
// parameters (a parameter arena): WebGPU forbids one buffer as read-only and writable storage in
// the same dispatch.
@group(0) @binding(2) var<storage, read_write> grad: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> state: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> paramTail: array<f32>;
@group(0) @binding(5) var<storage, read_write> gradTail: array<f32>;

// Four elements' parameter and state, in registers.
struct Lanes {
  p: vec4f,
  v: vec4f,
  m: vec4f,
  b: vec4f,
}

// The update rule on four elements at once.
fn update(e: ptr<function, Lanes>, gradient: vec4f) {
  var g = gradient;
  if (MAXIMIZE) { g = -g; }
  // fma where PyTorch's CPU kernels fuse, so that one rounding rule holds here, in the CPU
  // reference and in PyTorch (and no shader compiler is left to choose).
  if (WEIGHT_DECAY) { g = fma((*e).p, vec4f(hp.weightDecay), g); }
  (*e).v = fma(hp.oneMinusAlpha * g, g, hp.alpha * (*e).v);
  var d = (*e).v;
  if (CENTERED) {
    (*e).m = fma(g, vec4f(hp.oneMinusAlpha), hp.alpha * (*e).m);
    d = max(fma(-(*e).m, (*e).m, d), vec4f(0.0));
  }
  var den: vec4f;
  if (EPS_INSIDE) { den = sqrt(d + hp.eps); } else { den = sqrt(d) + hp.eps; }
  if (MOMENTUM) {
    if (LR_IN_MOMENTUM) {
      (*e).b = hp.momentum * (*e).b + (hp.lr * g) / den;
      (*e).p = (*e).p - (*e).b;
    } else {
      (*e).b = hp.momentum * (*e).b + g / den;
      (*e).p = fma((*e).b, vec4f(-hp.lr), (*e).p);
    }
  } else {
    (*e).p = (*e).p - (hp.lr * g) / den;
  }
}

fn momentumSlot() -> u32 {
  return select(1u, 2u, CENTERED) * hp.slotStride;
}

fn loadState(e: ptr<function, Lanes>, i: u32) {
  (*e).v = state[i];
  if (CENTERED) { (*e).m = state[i + hp.slotStride]; }
  if (MOMENTUM) { (*e).b = state[i + momentumSlot()]; }
}

fn storeState(e: ptr<function, Lanes>, i: u32) {
  state[i] = (*e).v;
  if (CENTERED) { state[i + hp.slotStride] = (*e).m; }
  if (MOMENTUM) { state[i + momentumSlot()] = (*e).b; }
}

// The body: one vec4 per invocation. Dispatches wider than maxComputeWorkgroupsPerDimension
// are spread over a 2-D grid, so the linear index folds in y.
@compute @workgroup_size(WORKGROUP_SIZE)
fn stepBody(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= hp.count4) { return; }
  var e: Lanes;
  e.p = param[i];
  loadState(&e, i);
  update(&e, grad[i]);
  param[i] = e.p;
  storeState(&e, i);
}

// The tail: the last 1 to 3 elements of a tensor whose length is not a multiple of 4, as the
// lanes of one vec4. Lanes past the tail compute on zeros and are not stored.
@compute @workgroup_size(1)
fn stepTail() {
  var e: Lanes;
  var g = vec4f(0.0);
  for (var k = 0u; k < hp.tailCount; k++) {
    e.p[k] = paramTail[hp.tailStart + k];
    g[k] = gradTail[hp.tailStart + k];
  }
  loadState(&e, hp.count4);
  let before = e;
  update(&e, g);
  let live = vec4u(0u, 1u, 2u, 3u) < vec4u(hp.tailCount);
  e.v = select(before.v, e.v, live);
  e.m = select(before.m, e.m, live);
  e.b = select(before.b, e.b, live);
  for (var k = 0u; k < hp.tailCount; k++) {
    paramTail[hp.tailStart + k] = e.p[k];
  }
  storeState(&e, hp.count4);
}
