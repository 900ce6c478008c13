/**
 * Learning-rate schedules: functions of the step number, passed as `lr`. The optimizer calls the
 * schedule before each step with the number of steps taken so far (0 for the first step, as
 * Optax's `count`; PyTorch's `last_epoch` when `scheduler.step()` follows every `optimizer.step()`),
 * checks the value, and writes it into a slot of the step-values ring (src/gpu/step-values.ts): a schedule
 * never rebuilds a pipeline, and every step runs with its own value in any pattern of encoders.
 *
 * Each function computes in double precision; the GPU (and the CPU twin) round the value to f32 once,
 * as PyTorch rounds a Python float learning rate.
 */

import { validateLr } from './options.js';

/**
 * A learning rate as a function of the 0-based step number; it must return a finite number >= 0.
 *
 * @example
 * ```ts
 * const halveEvery100: LrSchedule = (step) => 0.01 * 0.5 ** Math.floor(step / 100);
 * new RMSProp(device, params, { lr: halveEvery100 });
 * ```
 */
export type LrSchedule = (step: number) => number;

/**
 * The learning rate of each group at `step`: its schedule's value (checked: a finite number >= 0,
 * else a RangeError naming the group and step, thrown before any GPU work) or its current lr.
 * Returns undefined when no group has a schedule.
 */
export function scheduledLrs(
  schedules: readonly (LrSchedule | undefined)[],
  current: readonly number[],
  step: number,
  where: string,
): number[] | undefined {
  if (schedules.every((s) => s === undefined)) return undefined;
  return schedules.map((schedule, g) => (schedule ? scheduledLr(schedule, g, step, where) : current[g]!));
}

/** Group `group`'s schedule at `step`, checked as {@link scheduledLrs} checks it (no allocation). */
export function scheduledLr(schedule: LrSchedule, group: number, step: number, where: string): number {
  const value = schedule(step);
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `${where}: the lr schedule of param group ${group} returned ${String(value)} at step ${step}: ` +
      'a schedule must return a finite number >= 0. Nothing was changed.',
    );
  }
  return value;
}

/** Splits a function-valued `lr` off `options`: the options with lr at step 0 (checked), and the schedule. */
export function splitSchedule<T extends { lr?: unknown }>(
  options: T | undefined,
  where: string,
): { options: T | undefined; schedule?: LrSchedule } {
  if (typeof options !== 'object' || options === null || typeof options.lr !== 'function') return { options };
  const schedule = options.lr as LrSchedule;
  const first = schedule(0);
  if (typeof first !== 'number') {
    throw new TypeError(
      `${where}.lr is a schedule, and it returned ${typeof first} at step 0: it must return a number.`,
    );
  }
  validateLr(first, `${where}.lr(0) (the schedule at step 0)`);
  return { options: { ...options, lr: first }, schedule };
}

function positiveInteger(x: unknown, where: string): number {
  if (!Number.isSafeInteger(x) || (x as number) <= 0) {
    throw new RangeError(`${where} must be a positive integer, got ${String(x)}.`);
  }
  return x as number;
}

function nonNegative(x: unknown, where: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) {
    throw new RangeError(`${where} must be a finite number >= 0, got ${String(x)}.`);
  }
  return x;
}

/**
 * PyTorch `StepLR(step_size, gamma)`: `lr * gamma^floor(step / stepSize)`; Optax
 * `exponential_decay(lr, stepSize, gamma, staircase=True)`.
 *
 * @example
 * ```ts
 * new RMSProp(device, params, { lr: schedules.stepDecay(0.01, 1000, 0.5) }); // halves every 1000 steps
 * ```
 */
export function stepDecay(lr: number, stepSize: number, gamma = 0.1): LrSchedule {
  nonNegative(lr, 'stepDecay(lr)');
  positiveInteger(stepSize, 'stepDecay(stepSize)');
  nonNegative(gamma, 'stepDecay(gamma)');
  return (step) => lr * gamma ** Math.floor(step / stepSize);
}

/**
 * Optax `exponential_decay(lr, transitionSteps, decayRate)`: `lr * decayRate^(step / transitionSteps)`
 * (with `staircase`, the exponent floored). With `transitionSteps` 1 it is PyTorch
 * `ExponentialLR(gamma=decayRate)`: `lr * decayRate^step`.
 *
 * @example
 * ```ts
 * const lr = schedules.exponential(1e-3, 0.99); // PyTorch ExponentialLR(gamma=0.99)
 * ```
 */
export function exponential(lr: number, decayRate: number, transitionSteps = 1, staircase = false): LrSchedule {
  nonNegative(lr, 'exponential(lr)');
  nonNegative(decayRate, 'exponential(decayRate)');
  positiveInteger(transitionSteps, 'exponential(transitionSteps)');
  return (step) => {
    const p = step / transitionSteps;
    return lr * decayRate ** (staircase ? Math.floor(p) : p);
  };
}

/**
 * Optax `linear_schedule(initial, lr, warmupSteps)` held at `lr` afterwards: `initial + (lr - initial)
 * * min(step, warmupSteps) / warmupSteps`. (PyTorch `LinearLR(start_factor=initial/lr,
 * total_iters=warmupSteps)`.)
 *
 * @example
 * ```ts
 * const lr = schedules.linearWarmup(3e-4, 500); // 0 at step 0, 3e-4 from step 500 on
 * ```
 */
export function linearWarmup(lr: number, warmupSteps: number, initial = 0): LrSchedule {
  nonNegative(lr, 'linearWarmup(lr)');
  positiveInteger(warmupSteps, 'linearWarmup(warmupSteps)');
  nonNegative(initial, 'linearWarmup(initial)');
  return (step) => initial + (lr - initial) * (Math.min(step, warmupSteps) / warmupSteps);
}

/**
 * Optax `warmup_cosine_decay_schedule(initial, peak, warmupSteps, totalSteps, final)`: linear from
 * `initial` to `peak` over `warmupSteps`, then a cosine from `peak` down to `final` at `totalSteps`,
 * `final` afterwards: `final + (peak - final) * (1 + cos(pi * t / (totalSteps - warmupSteps))) / 2`,
 * t the steps since warmup. (PyTorch: `LinearLR` then `CosineAnnealingLR(T_max, eta_min=final)`.)
 *
 * @example
 * ```ts
 * const lr = schedules.cosineWithWarmup(1e-3, 100, 10_000); // warm up 100 steps, decay to 0 at 10k
 * ```
 */
export function cosineWithWarmup(
  peak: number,
  warmupSteps: number,
  totalSteps: number,
  { initial = 0, final = 0 }: { initial?: number; final?: number } = {},
): LrSchedule {
  nonNegative(peak, 'cosineWithWarmup(peak)');
  if (!Number.isSafeInteger(warmupSteps) || warmupSteps < 0) {
    throw new RangeError(`cosineWithWarmup(warmupSteps) must be an integer >= 0, got ${String(warmupSteps)}.`);
  }
  positiveInteger(totalSteps, 'cosineWithWarmup(totalSteps)');
  if (totalSteps <= warmupSteps) {
    throw new RangeError(`cosineWithWarmup(totalSteps) must exceed warmupSteps (${warmupSteps}), got ${totalSteps}.`);
  }
  nonNegative(initial, 'cosineWithWarmup({ initial })');
  nonNegative(final, 'cosineWithWarmup({ final })');
  const decaySteps = totalSteps - warmupSteps;
  return (step) => {
    if (step < warmupSteps) return initial + (peak - initial) * (step / warmupSteps);
    const t = Math.min(step - warmupSteps, decaySteps);
    return final + (peak - final) * 0.5 * (1 + Math.cos((Math.PI * t) / decaySteps));
  };
}

/**
 * The schedules, as one namespace.
 *
 * @example
 * ```ts
 * import { RMSProp, schedules } from 'webgpu-rmsprop';
 * const opt = new RMSProp(device, params, { lr: schedules.cosineWithWarmup(1e-3, 100, 5000) });
 * ```
 */
export const schedules = Object.freeze({
  /** `lr * gamma^floor(step / stepSize)`, PyTorch `StepLR`: see {@link stepDecay}. */
  stepDecay,
  /** `lr * decayRate^(step / transitionSteps)`, Optax `exponential_decay`: see {@link exponential}. */
  exponential,
  /** Linear from `initial` to `lr` over `warmupSteps`, then `lr`: see {@link linearWarmup}. */
  linearWarmup,
  /** Linear warmup to `peak`, then a cosine down to `final` at `totalSteps`: see {@link cosineWithWarmup}. */
  cosineWithWarmup,
});
