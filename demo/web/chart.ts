/**
 * The live loss chart: both optimizers' losses against the step, log-scale y, drawn by uPlot (a
 * small, fast canvas chart whose log axis, ticks and legend we would otherwise write by hand).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export const COLORS = { rmsprop: '#e4572e', sgd: '#2e86de', floor: '#888' } as const;

const HEIGHT = 300;

/**
 * The chart and the data it shows.
 *
 * @example
 * ```ts
 * const chart = new LossChart(document.getElementById('chart')!);
 * chart.reset(best.loss); // a new run (with a floor line: linear regression)
 * chart.push(step, rmspropLoss, sgdLoss);
 * chart.flush(); // once per frame
 * ```
 */
export class LossChart {
  readonly #element: HTMLElement;
  #plot: uPlot | undefined;
  readonly #steps: number[] = [];
  readonly #rmsprop: (number | null)[] = [];
  readonly #sgd: (number | null)[] = [];
  readonly #floor: number[] = [];
  #floorValue: number | undefined;
  #dirty = false;

  constructor(element: HTMLElement) {
    this.#element = element;
    new ResizeObserver(() => {
      const width = this.#width();
      if (this.#plot && width !== this.#plot.width) this.#plot.setSize({ width, height: HEIGHT });
    }).observe(element);
    this.reset();
  }

  #width(): number {
    return Math.max(280, this.#element.clientWidth);
  }

  /** Clears the data; `floor` adds a dashed line at the least loss there is (linear regression). */
  reset(floor?: number): void {
    for (const a of [this.#steps, this.#rmsprop, this.#sgd, this.#floor]) a.length = 0;
    this.#floorValue = floor;
    this.#plot?.destroy();
    const series: uPlot.Series[] = [
      { label: 'step' },
      { label: 'RMSProp', stroke: COLORS.rmsprop, width: 2, points: { show: false } },
      { label: 'SGD', stroke: COLORS.sgd, width: 2, points: { show: false } },
    ];
    if (floor !== undefined) {
      series.push({ label: `least-squares optimum (${floor.toPrecision(4)})`, stroke: COLORS.floor, width: 1.5, dash: [6, 4], points: { show: false } });
    }
    this.#plot = new uPlot({
      width: this.#width(),
      height: HEIGHT,
      scales: { x: { time: false }, y: { distr: 3 } }, // distr 3: log10
      axes: [
        { label: 'step', stroke: '#444', grid: { stroke: '#eee' }, ticks: { stroke: '#ddd' } },
        { label: 'training loss (log scale)', stroke: '#444', grid: { stroke: '#eee' }, ticks: { stroke: '#ddd' }, size: 62 },
      ],
      series,
      // Labels only: the numbers are in the stats above the chart.
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
    }, this.#data(), this.#element);
    this.#dirty = false;
  }

  #data(): uPlot.AlignedData {
    const data: uPlot.AlignedData = [this.#steps, this.#rmsprop, this.#sgd];
    return this.#floorValue === undefined ? data : [...data, this.#floor];
  }

  /** Adds a point for each optimizer (non-finite or non-positive losses leave a gap: a log axis has no place for them). */
  push(step: number, rmsprop: number, sgd: number): void {
    const clean = (x: number) => (Number.isFinite(x) && x > 0 ? x : null);
    this.#steps.push(step);
    this.#rmsprop.push(clean(rmsprop));
    this.#sgd.push(clean(sgd));
    if (this.#floorValue !== undefined) this.#floor.push(this.#floorValue);
    this.#dirty = true;
  }

  /** Redraws if anything changed since the last call. */
  flush(): void {
    if (!this.#dirty || !this.#plot) return;
    this.#dirty = false;
    this.#plot.setData(this.#data());
  }
}
