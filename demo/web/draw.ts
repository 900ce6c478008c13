/**
 * The right-hand pictures, drawn by hand on canvases: the decision function of a spirals model
 * (its WGSL grid evaluation, coloured by the predicted class, with the points on top), and the
 * linear-regression weights' distance from the least-squares ones, feature by feature.
 */
import type { LeastSquares, RegressionData } from '../problems/linear-regression';
import { EXTENT, type SpiralData } from '../problems/spirals';

/** Class colours: +1 (first arm) and -1 (second arm). */
const POSITIVE = [230, 124, 46] as const;
const NEGATIVE = [46, 120, 200] as const;

/** Sizes the canvas's backing store to its CSS size times the device pixel ratio; returns the CSS size. */
function prepare(canvas: HTMLCanvasElement): { ctx: CanvasRenderingContext2D; width: number; height: number } {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/** Scratch canvas holding the grid at one pixel per cell, scaled up (smoothly) onto the visible one. */
let cells: HTMLCanvasElement | undefined;

/**
 * Draws z on a `grid` × `grid` lattice (rows from the top) as colour, sigmoid(z) blended from the
 * second class's blue through white to the first class's orange, the line z = 0 darkened, then the
 * data points.
 *
 * @example
 * ```ts
 * drawField(canvas, await problem.evaluateGrid(), 64, data);
 * ```
 */
export function drawField(canvas: HTMLCanvasElement, field: Float32Array, grid: number, data: SpiralData): void {
  const { ctx, width, height } = prepare(canvas);
  cells ??= document.createElement('canvas');
  cells.width = grid;
  cells.height = grid;
  const cctx = cells.getContext('2d')!;
  const image = cctx.createImageData(grid, grid);
  for (let i = 0; i < grid * grid; i++) {
    const z = field[i]!;
    const p = Number.isFinite(z) ? 1 / (1 + Math.exp(-z)) : 0.5;
    const towards = p >= 0.5 ? POSITIVE : NEGATIVE;
    const t = Math.min(1, Math.abs(p - 0.5) * 2) * 0.55; // pastel: at most 55% of the class colour
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = Math.round(255 + (towards[c]! - 255) * t);
    image.data[4 * i + 3] = 255;
  }
  cctx.putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(cells, 0, 0, width, height);

  // The boundary z = 0 by marching squares over the cell centres, each crossing placed by linear
  // interpolation along its edge: a smooth line, not the cells' staircase.
  const cell = width / grid;
  ctx.strokeStyle = 'rgba(30, 30, 30, 0.8)';
  ctx.lineWidth = 1.6;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  const at = (u: number, v: number) => field[v * grid + u]!;
  for (let v = 0; v + 1 < grid; v++) {
    for (let u = 0; u + 1 < grid; u++) {
      // Corners clockwise from the top left, and the point where each edge crosses zero.
      const corners: [number, number, number][] = [[u, v, at(u, v)], [u + 1, v, at(u + 1, v)], [u + 1, v + 1, at(u + 1, v + 1)], [u, v + 1, at(u, v + 1)]];
      const crossings: [number, number][] = [];
      for (let e = 0; e < 4; e++) {
        const [u0, v0, z0] = corners[e]!, [u1, v1, z1] = corners[(e + 1) % 4]!;
        if (z0 > 0 === z1 > 0 || !Number.isFinite(z0) || !Number.isFinite(z1)) continue;
        const t = z0 / (z0 - z1);
        crossings.push([(u0 + t * (u1 - u0) + 0.5) * cell, (v0 + t * (v1 - v0) + 0.5) * cell]);
      }
      // Two crossings: one segment. Four (a saddle): pair them by the sign at the centre.
      let pairs: [number, number][] = [[0, 1]];
      if (crossings.length === 4) {
        const centre = corners.reduce((sum, c) => sum + c[2], 0) / 4;
        pairs = centre > 0 === corners[0]![2] > 0 ? [[0, 1], [2, 3]] : [[0, 3], [1, 2]];
      } else if (crossings.length !== 2) continue;
      for (const [i, j] of pairs) {
        ctx.moveTo(...crossings[i]!);
        ctx.lineTo(...crossings[j]!);
      }
    }
  }
  ctx.stroke();

  // The points, in input space [-EXTENT, EXTENT]² (x1 up).
  const toX = (x0: number) => ((x0 + EXTENT) / (2 * EXTENT)) * width;
  const toY = (x1: number) => ((EXTENT - x1) / (2 * EXTENT)) * height;
  for (let i = 0; i < data.samples; i++) {
    const color = data.y[i]! > 0 ? POSITIVE : NEGATIVE;
    ctx.beginPath();
    ctx.arc(toX(data.x[2 * i]!), toY(data.x[2 * i + 1]!), 2.6, 0, 2 * Math.PI);
    ctx.fillStyle = `rgb(${color.join(',')})`;
    ctx.fill();
    ctx.lineWidth = 0.8;
    ctx.strokeStyle = 'rgba(255,255,255,0.9)';
    ctx.stroke();
  }
}

/**
 * Draws |w_j − w*_j| per feature for both optimizers, on a log axis, features left to right from
 * the smallest scale to the largest: RMSProp fits them all; SGD, held to a small lr by the largest,
 * leaves the small-scale ones far off.
 *
 * @example
 * ```ts
 * drawWeights(canvas, rmspropW, sgdW, best, data);
 * ```
 */
export function drawWeights(canvas: HTMLCanvasElement, rmsprop: Float32Array, sgd: Float32Array, best: LeastSquares, data: RegressionData): void {
  const { ctx, width, height } = prepare(canvas);
  const left = 60, right = 10, top = 14, bottom = 44;
  const plotW = width - left - right, plotH = height - top - bottom;
  const lo = -5, hi = 1; // log10 of the axis ends
  const y = (error: number) => {
    const l = Math.log10(Math.max(error, 10 ** lo));
    return top + plotH * (1 - (Math.min(l, hi) - lo) / (hi - lo));
  };
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#555';
  ctx.strokeStyle = '#ddd';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let e = lo; e <= hi; e++) {
    const yy = y(10 ** e);
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + plotW, yy);
    ctx.stroke();
    ctx.fillText(`1e${e}`, left - 6, yy);
  }
  const d = data.features, slot = plotW / d, bar = Math.min(12, slot * 0.36);
  const series: [Float32Array, string][] = [[rmsprop, '#e4572e'], [sgd, '#2e86de']];
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let j = 0; j < d; j++) {
    const cx = left + slot * (j + 0.5);
    series.forEach(([w, color], s) => {
      const error = Math.abs(w[j]! - best.w[j]!);
      const yy = Number.isFinite(error) ? y(error) : top;
      ctx.fillStyle = color;
      ctx.fillRect(cx + (s === 0 ? -bar - 1 : 1), yy, bar, top + plotH - yy);
    });
    ctx.fillStyle = '#555';
    if (j === 0 || j === d - 1 || j % 3 === 0) ctx.fillText(data.scales[j]!.toPrecision(2), cx, top + plotH + 4);
  }
  ctx.fillText('feature scale (each bar pair: one weight)', left + plotW / 2, top + plotH + 22);
  ctx.save();
  ctx.translate(14, top + plotH / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('|w − w_least-squares|', 0, -6);
  ctx.restore();
}
