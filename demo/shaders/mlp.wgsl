// A 2 → H → H → 1 tanh MLP on the two-spirals problem: forward, logistic loss, backward, the
// gradient's reduction over samples, and the decision function on a grid. The CPU twin is
// `CpuSpirals` in demo/problems/spirals.ts: same operations in the same order, f32.
//
//   a1 = tanh(W1 x + b1),  a2 = tanh(W2 a1 + b2),  z = w3 · a2 + b3      (forward, per sample)
//   L  = (1/N) Σ_i softplus(-y_i z_i),   y_i ∈ {-1, +1}                   (logistic loss)
//   δ3 = dL_i/dz = -y σ(-y z),  δ2 = δ3 w3 ⊙ (1 - a2²),  δ1 = (W2ᵀ δ2) ⊙ (1 - a1²)   (backward)
//   dL/dW1 = (1/N) Σ_i δ1 xᵀ, dL/dW2 = (1/N) Σ_i δ2 a1ᵀ, dL/dw3 = (1/N) Σ_i δ3 a2, biases Σ δ / N
//
// `sample` writes each sample's activations and deltas to `scratch`; `gradient` has one invocation
// per parameter, summing its column over the samples in order (no atomics, no barriers: the same
// result every run, and cheap on a software adapter); `loss` sums the per-sample losses. The
// parameters and gradients are views (offset ranges) of a ParamArena's two buffers.

override WORKGROUP_SIZE: u32 = 64u;

// Hidden width. The host reads this line (one source for the constant): private arrays need a
// const size.
const HIDDEN = 32u;
// Per-sample scratch: a1, a2, δ1, δ2 (HIDDEN each), then δ3, the sample's loss and z.
const STRIDE = 4u * HIDDEN + 3u;

struct Shape {
  samples: u32,  // N
  grid: u32,     // G: the decision-function grid is G × G
  lo: f32,       // the grid spans [lo, hi]² in input space
  hi: f32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> data: array<f32>;               // N × (x0, x1, y)
@group(0) @binding(2) var<storage, read> w1: array<f32>;                 // H × 2, row-major (out, in)
@group(0) @binding(3) var<storage, read> b1: array<f32>;                 // H
@group(0) @binding(4) var<storage, read> w2: array<f32>;                 // H × H
@group(0) @binding(5) var<storage, read> b2: array<f32>;                 // H
@group(0) @binding(6) var<storage, read> w3: array<f32>;                 // H
@group(0) @binding(7) var<storage, read> b3: array<f32>;                 // 1
@group(0) @binding(8) var<storage, read_write> scratch: array<f32>;      // N × STRIDE
@group(0) @binding(9) var<storage, read_write> gw1: array<f32>;          // gradients: views of the arena's grads
@group(0) @binding(10) var<storage, read_write> gb1: array<f32>;
@group(0) @binding(11) var<storage, read_write> gw2: array<f32>;
@group(0) @binding(12) var<storage, read_write> gb2: array<f32>;
@group(0) @binding(13) var<storage, read_write> gw3: array<f32>;
@group(0) @binding(14) var<storage, read_write> gb3: array<f32>;
@group(0) @binding(15) var<storage, read_write> metrics: array<f32>;     // [loss, accuracy]
@group(0) @binding(16) var<storage, read_write> field: array<f32>;       // G × G values of z

// z at input (x0, x1); fills a1 and a2 when asked (the grid needs only z).
fn forwardTo(x0: f32, x1: f32, a1: ptr<function, array<f32, HIDDEN>>, a2: ptr<function, array<f32, HIDDEN>>) -> f32 {
  for (var j = 0u; j < HIDDEN; j++) {
    var pre = b1[j];
    pre += w1[2u * j] * x0;
    pre += w1[2u * j + 1u] * x1;
    (*a1)[j] = tanh(pre);
  }
  for (var j = 0u; j < HIDDEN; j++) {
    var pre = b2[j];
    for (var k = 0u; k < HIDDEN; k++) {
      pre += w2[j * HIDDEN + k] * (*a1)[k];
    }
    (*a2)[j] = tanh(pre);
  }
  var z = b3[0];
  for (var k = 0u; k < HIDDEN; k++) {
    z += w3[k] * (*a2)[k];
  }
  return z;
}

// Invocation i: forward and backward of sample i into scratch[i * STRIDE ..].
@compute @workgroup_size(WORKGROUP_SIZE)
fn sample(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= shape.samples) { return; }
  let x0 = data[3u * i];
  let x1 = data[3u * i + 1u];
  let y = data[3u * i + 2u];
  var a1: array<f32, HIDDEN>;
  var a2: array<f32, HIDDEN>;
  let z = forwardTo(x0, x1, &a1, &a2);
  // softplus(-y z) = max(-y z, 0) + log(1 + exp(-|y z|)), and σ(-y z) from the same exponential:
  // neither overflows for any z.
  let m = -y * z;
  let e = exp(-abs(m));
  let loss = max(m, 0.0) + log(1.0 + e);
  let sigma = select(1.0 / (1.0 + e), e / (1.0 + e), m < 0.0); // σ(m)
  let d3 = -y * sigma;
  let row = i * STRIDE;
  var d2: array<f32, HIDDEN>;
  for (var j = 0u; j < HIDDEN; j++) {
    d2[j] = (d3 * w3[j]) * (1.0 - a2[j] * a2[j]);
  }
  for (var k = 0u; k < HIDDEN; k++) {
    var back = 0.0;
    for (var j = 0u; j < HIDDEN; j++) {
      back += w2[j * HIDDEN + k] * d2[j];
    }
    scratch[row + k] = a1[k];
    scratch[row + HIDDEN + k] = a2[k];
    scratch[row + 2u * HIDDEN + k] = back * (1.0 - a1[k] * a1[k]);
    scratch[row + 3u * HIDDEN + k] = d2[k];
  }
  scratch[row + 4u * HIDDEN] = d3;
  scratch[row + 4u * HIDDEN + 1u] = loss;
  scratch[row + 4u * HIDDEN + 2u] = z;
}

// Invocation c: one gradient element, Σ_i (delta · input) / N over the samples in order. Columns
// run through the tensors in the arena's order: w1 (2H), b1 (H), w2 (H²), b2 (H), w3 (H), b3 (1).
@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient(@builtin(global_invocation_id) id: vec3u) {
  var c = id.x;
  let n = shape.samples;
  var sum = 0.0;
  if (c < 2u * HIDDEN) {
    let j = c / 2u;
    let k = c % 2u;
    for (var i = 0u; i < n; i++) { sum += scratch[i * STRIDE + 2u * HIDDEN + j] * data[3u * i + k]; }
    gw1[c] = sum / f32(n);
    return;
  }
  c -= 2u * HIDDEN;
  if (c < HIDDEN) {
    for (var i = 0u; i < n; i++) { sum += scratch[i * STRIDE + 2u * HIDDEN + c]; }
    gb1[c] = sum / f32(n);
    return;
  }
  c -= HIDDEN;
  if (c < HIDDEN * HIDDEN) {
    let j = c / HIDDEN;
    let k = c % HIDDEN;
    for (var i = 0u; i < n; i++) { sum += scratch[i * STRIDE + 3u * HIDDEN + j] * scratch[i * STRIDE + k]; }
    gw2[c] = sum / f32(n);
    return;
  }
  c -= HIDDEN * HIDDEN;
  if (c < HIDDEN) {
    for (var i = 0u; i < n; i++) { sum += scratch[i * STRIDE + 3u * HIDDEN + c]; }
    gb2[c] = sum / f32(n);
    return;
  }
  c -= HIDDEN;
  if (c < HIDDEN) {
    for (var i = 0u; i < n; i++) { sum += scratch[i * STRIDE + 4u * HIDDEN] * scratch[i * STRIDE + HIDDEN + c]; }
    gw3[c] = sum / f32(n);
    return;
  }
  c -= HIDDEN;
  if (c == 0u) {
    for (var i = 0u; i < n; i++) { sum += scratch[i * STRIDE + 4u * HIDDEN]; }
    gb3[0] = sum / f32(n);
  }
}

// One invocation: the mean loss and the fraction of samples on the right side of z = 0, into metrics.
@compute @workgroup_size(1)
fn loss() {
  let n = shape.samples;
  var sum = 0.0;
  var right = 0u;
  for (var i = 0u; i < n; i++) {
    sum += scratch[i * STRIDE + 4u * HIDDEN + 1u];
    let y = data[3u * i + 2u];
    if (y * scratch[i * STRIDE + 4u * HIDDEN + 2u] > 0.0) { right++; }
  }
  metrics[0] = sum / f32(n);
  metrics[1] = f32(right) / f32(n);
}

// Invocation (u, v): z at the centre of grid cell (u, v), row v from the top (x1 = hi) down.
@compute @workgroup_size(WORKGROUP_SIZE)
fn grid(@builtin(global_invocation_id) id: vec3u) {
  let g = shape.grid;
  if (id.x >= g * g) { return; }
  let u = id.x % g;
  let v = id.x / g;
  let step = (shape.hi - shape.lo) / f32(g);
  let x0 = shape.lo + (f32(u) + 0.5) * step;
  let x1 = shape.hi - (f32(v) + 0.5) * step;
  var a1: array<f32, HIDDEN>;
  var a2: array<f32, HIDDEN>;
  field[id.x] = forwardTo(x0, x1, &a1, &a2);
}
