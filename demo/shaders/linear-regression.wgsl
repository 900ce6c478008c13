// Linear regression on the GPU: predictions, residuals, the mean squared error and its gradient.
// The CPU twin is `lossAndGradient` in demo/problems/linear-regression.ts.
//
//   r_i   = x_i · w + b - y_i                        (forward: one invocation per sample)
//   L     = (1/N) Σ r_i²                             (loss)
//   dL/dw = (2/N) Σ r_i x_i,   dL/db = (2/N) Σ r_i   (backward)
//
// The loss and the gradient are all column sums over samples of r_i · [x_i, 1, r_i]: `features + 2`
// columns, reduced in two levels: `columnPartials` sums each tile of `tile` samples per column, then
// `finish` sums each column's tiles and scales. The host picks tile ≈ √N, so each level is a
// serial loop of about √N additions. No atomics (WGSL has no f32 atomics) and a fixed order, so a
// run is reproducible; and no workgroup barriers, which cost a software adapter (SwiftShader) far
// more than the additions they would save at these sizes.

override WORKGROUP_SIZE: u32 = 64u;

struct Shape {
  samples: u32,   // N
  features: u32,  // D: w has D elements, b one
  tile: u32,      // samples per partial sum
  tiles: u32,     // ceil(N / tile)
}

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;               // N × D, row-major
@group(0) @binding(2) var<storage, read> y: array<f32>;               // N targets
@group(0) @binding(3) var<storage, read> w: array<f32>;               // D weights
@group(0) @binding(4) var<storage, read> b: array<f32>;               // the bias: one element
@group(0) @binding(5) var<storage, read_write> residual: array<f32>;  // N
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;  // (D + 2) columns × tiles
@group(0) @binding(7) var<storage, read_write> gradW: array<f32>;     // D: read by the optimizer
@group(0) @binding(8) var<storage, read_write> gradB: array<f32>;     // 1: read by the optimizer
@group(0) @binding(9) var<storage, read_write> loss: array<f32>;      // 1: L at the w, b forward read

// Invocation i: r_i = x_i · w + b - y_i.
@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= shape.samples) { return; }
  let row = i * shape.features;
  var prediction = b[0];
  for (var j = 0u; j < shape.features; j++) {
    prediction += x[row + j] * w[j];
  }
  residual[i] = prediction - y[i];
}

// Invocation (tile, column): the sum over the tile's samples of r·x_column (column < D),
// r (column D) or r² (column D + 1), into partials[column * tiles + tile].
@compute @workgroup_size(WORKGROUP_SIZE)
fn columnPartials(@builtin(global_invocation_id) id: vec3u) {
  let tile = id.x;
  let column = id.y;
  if (tile >= shape.tiles || column >= shape.features + 2u) { return; }
  let first = tile * shape.tile;
  let end = min(first + shape.tile, shape.samples); // the last tile may be short
  var sum = 0.0;
  for (var i = first; i < end; i++) {
    let r = residual[i];
    if (column < shape.features) {
      sum += r * x[i * shape.features + column];
    } else if (column == shape.features) {
      sum += r;
    } else {
      sum += r * r;
    }
  }
  partials[column * shape.tiles + tile] = sum;
}

// Invocation `column`: sums that column's tiles into a gradient element or the loss.
@compute @workgroup_size(WORKGROUP_SIZE)
fn finish(@builtin(global_invocation_id) id: vec3u) {
  let column = id.x;
  if (column >= shape.features + 2u) { return; }
  var sum = 0.0;
  for (var t = 0u; t < shape.tiles; t++) {
    sum += partials[column * shape.tiles + t];
  }
  let n = f32(shape.samples);
  if (column < shape.features) {
    gradW[column] = 2.0 * sum / n;
  } else if (column == shape.features) {
    gradB[0] = 2.0 * sum / n;
  } else {
    loss[0] = sum / n;
  }
}
