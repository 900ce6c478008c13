/**
 * The demo page: finds WebGPU (or offers the CPU reference), wires the controls, and runs the
 * training loop, drawing the loss chart and the models as they learn.
 *
 * For tests and the curious, `window.__demo.state()` reports the run; element ids are stable.
 */
import { adapterWords } from '../check/compare';
import { LossChart } from './chart';
import { DEFAULTS, parseField, type Hyper, type NumericField } from './controls';
import { drawField, drawWeights } from './draw';
import { createSession, type Backend, type Metrics, type ProblemName, type Session } from './session';

/** What `window.__demo.state()` returns. */
export interface DemoState {
  /** True once the page has looked for WebGPU and set itself up. */
  ready: boolean;
  problem: ProblemName;
  /** null until WebGPU was found or the CPU path chosen. */
  backend: Backend | null;
  adapter: string;
  running: boolean;
  /** True while a reset or a start is queued or under way: the numbers below may be about to change. */
  busy: boolean;
  step: number;
  rmspropLoss: number | null;
  sgdLoss: number | null;
  rmspropAccuracy: number | null;
  sgdAccuracy: number | null;
  stepsPerSecond: number | null;
  /** The hyperparameters the current run was made with (lr: the ones in force now). */
  hyper: Hyper | null;
  error?: string;
}

declare global {
  interface Window {
    __demo?: { state(): DemoState };
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`demo: no element #${id} in index.html`);
  return element as T;
};

/** The numeric fields and their inputs' ids. */
const FIELDS: readonly { field: NumericField; id: string }[] = [
  { field: 'lr', id: 'lr' },
  { field: 'alpha', id: 'alpha' },
  { field: 'momentum', id: 'momentum' },
  { field: 'sgdLr', id: 'sgd-lr' },
  { field: 'maxSteps', id: 'max-steps' },
];

/** Milliseconds of training per chunk between redraws: long enough to keep the GPU busy, short enough to stay smooth. */
const TARGET_CHUNK_MS = 40;
/** Milliseconds between redraws of the models. */
const PICTURE_EVERY_MS = 250;
/**
 * What one GPU round trip costs however little work it waits for (an empty submit's
 * onSubmittedWorkDone): about 1 ms in Chromium, 100 ms in Firefox 153, which polls its GPU process on
 * a timer. The chunk sizing leaves it out, or a chunk would shrink to one step there.
 */
let roundTripMs = 0;

const chart = new LossChart($('chart'));
const startButton = $<HTMLButtonElement>('start');
const resetButton = $<HTMLButtonElement>('reset');
const centered = $<HTMLInputElement>('centered');

let problem: ProblemName = 'spirals';
let backend: Backend | null = null;
let device: GPUDevice | null = null;
let adapter = '';
let ready = false;
let session: Session | null = null;
/** The values `session` was made with, and the learning rates now in force. */
let sessionHyper: Hyper | null = null;
let running = false;
/** The training loop while it runs (it ends soon after `running` turns false). */
let looping: Promise<void> | null = null;
/** Resets and starts run one after another, each after the last has finished (see `serialized`). */
let queue: Promise<unknown> = Promise.resolve();
/** How many of those are queued or under way. */
let queued = 0;
let step = 0;
let last: { rmsprop: Metrics; sgd: Metrics } | null = null;
let error: string | undefined;
/** (time, step) samples of the last second or so, for steps per second. */
let rate: { t: number; step: number }[] = [];

window.__demo = {
  state: (): DemoState => ({
    ready,
    problem,
    backend,
    adapter,
    running,
    busy: queued > 0,
    step,
    rmspropLoss: last?.rmsprop.loss ?? null,
    sgdLoss: last?.sgd.loss ?? null,
    rmspropAccuracy: last?.rmsprop.accuracy ?? null,
    sgdAccuracy: last?.sgd.accuracy ?? null,
    stepsPerSecond: stepsPerSecond(),
    hyper: sessionHyper ? { ...sessionHyper } : null,
    ...(error === undefined ? {} : { error }),
  }),
};

// ---------------------------------------------------------------------------------------------
// Fields

/** Parses one field, shows or clears its inline message; returns the value or undefined. */
function check(field: NumericField, id: string): number | undefined {
  const input = $<HTMLInputElement>(id);
  const parsed = parseField(field, input.value);
  $(`${id}-error`).textContent = parsed.ok ? '' : parsed.message;
  input.setAttribute('aria-invalid', String(!parsed.ok));
  return parsed.ok ? parsed.value : undefined;
}

/** Every field's value, or null (with the messages shown) when any is bad. */
function readHyper(): Hyper | null {
  const values: Partial<Record<NumericField, number>> = {};
  let ok = true;
  for (const { field, id } of FIELDS) {
    const value = check(field, id);
    if (value === undefined) ok = false;
    else values[field] = value;
  }
  if (!ok) return null;
  return { ...(values as Record<NumericField, number>), centered: centered.checked };
}

function fillFields(h: Hyper): void {
  const text: Record<NumericField, string> = {
    lr: String(h.lr), alpha: String(h.alpha), momentum: String(h.momentum), sgdLr: String(h.sgdLr), maxSteps: String(h.maxSteps),
  };
  for (const { field, id } of FIELDS) {
    $<HTMLInputElement>(id).value = text[field];
    check(field, id);
  }
  centered.checked = h.centered;
}

function setPending(text: string): void {
  $('pending').textContent = text;
}

/** Tells whether the optimizer settings on screen differ from the run's (they apply on Reset). */
function notePending(): void {
  if (!sessionHyper) return setPending('');
  const changed: string[] = [];
  const alpha = parseField('alpha', $<HTMLInputElement>('alpha').value);
  const momentum = parseField('momentum', $<HTMLInputElement>('momentum').value);
  if (alpha.ok && alpha.value !== sessionHyper.alpha) changed.push('alpha');
  if (momentum.ok && momentum.value !== sessionHyper.momentum) changed.push('momentum');
  if (centered.checked !== sessionHyper.centered) changed.push('centered');
  setPending(changed.length ? `New ${changed.join(', ')}: press Reset to start a run with ${changed.length > 1 ? 'them' : 'it'}.` : '');
}

for (const { field, id } of FIELDS) {
  $<HTMLInputElement>(id).addEventListener('input', () => {
    const value = check(field, id);
    // A valid learning rate takes effect at once (the optimizers' lr setters: no pipeline is
    // rebuilt); a bad one is shown and never reaches the model.
    if (value !== undefined && session && sessionHyper && (field === 'lr' || field === 'sgdLr')) {
      sessionHyper[field] = value;
      session.setLr(sessionHyper.lr, sessionHyper.sgdLr);
    }
    if (value !== undefined && sessionHyper && field === 'maxSteps') sessionHyper.maxSteps = value;
    notePending();
  });
}
centered.addEventListener('change', notePending);

// ---------------------------------------------------------------------------------------------
// Display

const format = (x: number | null | undefined) => (x === null || x === undefined ? '—' : Number.isFinite(x) ? x.toPrecision(4) : `${x} (diverged)`);
const percent = (x: number | null | undefined) => (x === null || x === undefined ? '—' : `${(100 * x).toFixed(1)}%`);

function stepsPerSecond(): number | null {
  if (rate.length < 2) return null;
  const first = rate[0]!, latest = rate.at(-1)!;
  return latest.t > first.t ? ((latest.step - first.step) * 1000) / (latest.t - first.t) : null;
}

function showStats(): void {
  $('step').textContent = String(step);
  const sps = stepsPerSecond();
  $('steps-per-second').textContent = sps !== null ? sps.toFixed(0) : '—'; // the last run's rate stays up when it stops
  $('rmsprop-loss').textContent = format(last?.rmsprop.loss);
  $('sgd-loss').textContent = format(last?.sgd.loss);
  $('rmsprop-accuracy').textContent = percent(last?.rmsprop.accuracy);
  $('sgd-accuracy').textContent = percent(last?.sgd.accuracy);
  startButton.textContent = running ? 'Pause' : step > 0 ? 'Resume' : 'Start';
}

async function drawPicture(s: Session): Promise<void> {
  const picture = await s.picture();
  if (s !== session) return;
  if (picture.kind === 'field') {
    drawField($<HTMLCanvasElement>('boundary-rmsprop'), picture.rmsprop, picture.grid, picture.data);
    drawField($<HTMLCanvasElement>('boundary-sgd'), picture.sgd, picture.grid, picture.data);
  } else {
    drawWeights($<HTMLCanvasElement>('weights'), picture.rmsprop, picture.sgd, picture.best, picture.data);
  }
}

/** Why SGD has its own lr, per problem (the measurements behind DEFAULTS in controls.ts). */
const SGD_NOTES: Record<ProblemName, string> = {
  spirals: 'Its own lr: SGD needs a far larger one. At 0.5, 1 or 2 it is still above loss 0.6 at step 300.',
  linreg: 'Its own lr: the feature of scale 10 caps SGD at lr 0.0105 (it diverges above); RMSProp has no such cap.',
};

function showProblem(): void {
  $('sgd-lr-note').textContent = SGD_NOTES[problem];
  $('pictures-spirals').hidden = problem !== 'spirals';
  $('pictures-linreg').hidden = problem !== 'linreg';
  $('rmsprop-accuracy-box').hidden = problem !== 'spirals';
  $('sgd-accuracy-box').hidden = problem !== 'spirals';
}

function fail(message: string): void {
  error = message;
  running = false;
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
  console.error(`demo: ${message}`);
  showStats();
}

// ---------------------------------------------------------------------------------------------
// Runs

/**
 * Runs `task` after every task queued before it: a reset never destroys a session that a loop or
 * another reset is still reading from the GPU (its mapAsync would fail), however fast one clicks.
 */
function serialized<T>(task: () => Promise<T>): Promise<T> {
  queued += 1;
  const result = queue.then(task).finally(() => { queued -= 1; });
  queue = result.catch(() => {});
  return result;
}

/** Stops the loop and waits until it has finished its chunk. */
async function stopLoop(): Promise<void> {
  running = false;
  await looping;
}

/** Ends the run (if any) and makes a new one from the fields; false (messages shown) if a field is bad. */
const reset = (): Promise<boolean> => serialized(resetNow);

async function resetNow(): Promise<boolean> {
  await stopLoop();
  session?.destroy();
  session = null;
  sessionHyper = null;
  step = 0;
  last = null;
  rate = [];
  setPending('');
  const h = readHyper();
  if (!h || !backend) {
    chart.reset();
    showStats();
    if (!h) setPending('Fix the fields marked in red, then press Reset.');
    return false;
  }
  try {
    const s = await createSession(problem, backend === 'webgpu' ? device : null, h);
    session = s;
    sessionHyper = { ...h };
    chart.reset(s.floor);
    last = await s.train(0); // the loss at the start, before any step
    if (s !== session) return false;
    chart.push(0, last.rmsprop.loss, last.sgd.loss);
    chart.flush();
    await drawPicture(s);
  } catch (e) {
    fail(`could not set up the run: ${(e as Error).message}`);
    return false;
  }
  showStats();
  return true;
}

const start = (): Promise<void> => serialized(startNow);

async function startNow(): Promise<void> {
  if (running || !backend || error) return;
  await looping; // a paused loop finishing its last chunk
  const h = readHyper();
  if (!h) {
    setPending('Fix the fields marked in red first: nothing was started or changed.');
    return;
  }
  if (!session && !(await resetNow())) return;
  if (!session || !sessionHyper) return;
  // lr fields were applied as typed; maxSteps too.
  if (step >= sessionHyper.maxSteps) {
    setPending(`The run has reached "stop after" (${sessionHyper.maxSteps}): raise it to go on, or Reset.`);
    return;
  }
  setPending('');
  notePending();
  running = true;
  rate = [{ t: performance.now(), step }];
  showStats();
  looping = loop().finally(() => { looping = null; });
}

function pause(): void {
  running = false;
  showStats();
}

const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function loop(): Promise<void> {
  let chunk = backend === 'cpu' ? 1 : 4;
  let lastPicture = performance.now();
  try {
    while (running && session && sessionHyper) {
      const s = session;
      const n = Math.min(chunk, sessionHyper.maxSteps - step);
      if (n <= 0) {
        pause();
        break;
      }
      const t0 = performance.now();
      const metrics = await s.train(n);
      const t1 = performance.now();
      step += n;
      last = metrics;
      chart.push(step, metrics.rmsprop.loss, metrics.sgd.loss);
      rate.push({ t: t1, step });
      while (rate.length > 2 && t1 - rate[0]!.t > 1500) rate.shift();
      // The chunk's training time is its time less the fixed round trip of its readback.
      chunk = Math.max(1, Math.min(64, Math.round((n * TARGET_CHUNK_MS) / Math.max(1, t1 - t0 - roundTripMs))));
      if (t1 - lastPicture > PICTURE_EVERY_MS || step >= sessionHyper.maxSteps) {
        await drawPicture(s);
        lastPicture = performance.now();
      }
      if (step >= sessionHyper.maxSteps) running = false;
      chart.flush();
      showStats();
      await nextTask(); // lets input events in between chunks
    }
  } catch (e) {
    fail(`training stopped: ${(e as Error).message}`);
  } finally {
    chart.flush();
    showStats();
  }
}

// ---------------------------------------------------------------------------------------------
// Buttons and problem choice

startButton.addEventListener('click', () => {
  if (running) pause();
  else void start();
});
resetButton.addEventListener('click', () => void reset());
for (const radio of Array.from(document.querySelectorAll<HTMLInputElement>('input[name="problem"]'))) {
  radio.addEventListener('change', () => {
    if (!radio.checked) return;
    problem = radio.value as ProblemName;
    fillFields(DEFAULTS[problem]);
    showProblem();
    void reset();
  });
}

// ---------------------------------------------------------------------------------------------
// WebGPU, or the CPU reference

/** A device, or why there is none. */
async function findDevice(): Promise<string | null> {
  if (new URLSearchParams(location.search).get('webgpu') === 'off') {
    return 'WebGPU is switched off for this page (?webgpu=off).';
  }
  if (!('gpu' in navigator) || !navigator.gpu) {
    return 'This browser has no WebGPU (navigator.gpu is missing). Chrome and Edge 113+ have it; on Linux it may need chrome://flags/#enable-unsafe-webgpu, and it needs a secure context (https or localhost).';
  }
  const found = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (!found) return 'WebGPU is here, but it found no adapter (no GPU it may use, or a blocklisted driver).';
  const info = found.info;
  const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ? ' (fallback adapter, a CPU implementation)' : '';
  adapter = adapterWords(info) + fallback;
  try {
    device = await found.requestDevice({ label: 'webgpu-rmsprop demo' });
  } catch (e) {
    return `The adapter (${adapter}) gave no device: ${(e as Error).message}`;
  }
  device.lost.then((lost) => {
    if (lost.reason !== 'destroyed') fail(`the GPU device was lost (${lost.reason}): ${lost.message}. Reload the page.`);
  }, () => {});
  device.addEventListener('uncapturederror', (event) => fail(`WebGPU error: ${(event as GPUUncapturedErrorEvent).error.message}`));
  roundTripMs = await measureRoundTrip(device);
  return null;
}

/** The fastest of three empty round trips to the GPU, in ms (see `roundTripMs`). */
async function measureRoundTrip(d: GPUDevice): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    d.queue.submit([]);
    await d.queue.onSubmittedWorkDone();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

async function init(): Promise<void> {
  fillFields(DEFAULTS[problem]);
  showProblem();
  showStats();
  const why = await findDevice();
  if (why) {
    $('adapter').textContent = 'WebGPU adapter: none';
    $('no-webgpu-message').textContent = why;
    $('no-webgpu').hidden = false;
    startButton.disabled = true;
    resetButton.disabled = true;
    $('run-cpu').addEventListener('click', () => {
      backend = 'cpu';
      adapter = 'none: the CPU reference (ReferenceRMSProp and the CPU twin of the problem)';
      $('adapter').textContent = `Running on the CPU: ${adapter}`;
      $('no-webgpu').hidden = true;
      startButton.disabled = false;
      resetButton.disabled = false;
      void reset().then((ok) => (ok ? start() : undefined));
    });
  } else {
    backend = 'webgpu';
    $('adapter').innerHTML = '';
    $('adapter').append('WebGPU adapter: ', Object.assign(document.createElement('strong'), { textContent: adapter }));
    await reset();
  }
  ready = true;
}

init().catch((e: unknown) => {
  fail(`the demo failed to start: ${(e as Error).message}`);
  ready = true;
});
