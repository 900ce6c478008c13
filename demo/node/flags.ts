/**
 * `npm start`'s command line: which problems to run and how, with per-problem defaults. Pure (no
 * process access) so that tests can call it.
 */
import { parseArgs } from 'node:util';

export const USAGE =
  'usage: npm start -- [--problem linreg|spirals|all] [--steps N] [--lr X] [--sgd-lr X] [--schedule cosine|constant] ' +
  '[--every N] [--max-gap X] [--min-accuracy X] [--cpu]';

export type ProblemChoice = 'linreg' | 'spirals' | 'all';

/** What one problem's run uses. */
export interface RunFlags {
  steps: number;
  lr: number;
  /** Plain SGD's lr (spirals: trained beside RMSProp). */
  sgdLr: number;
  schedule: 'cosine' | 'constant';
  every: number;
}

export interface Flags {
  problem: ProblemChoice;
  linreg: RunFlags;
  spirals: RunFlags;
  /** Linear regression fails above this relative gap to the least-squares loss. */
  maxGap: number;
  /** The spirals run fails below this RMSProp accuracy. */
  minAccuracy: number;
  cpu: boolean;
  help: boolean;
}

/**
 * Each problem's defaults, used where a flag is not given. Linear regression: PyTorch's defaults
 * with lr 0.02 on a cosine to 0, 1000 steps (it settles on the optimum). Spirals: PyTorch's lr
 * 0.01, constant, 500 steps (100% accuracy from about step 300); SGD at lr 1.
 */
export const RUN_DEFAULTS: Record<'linreg' | 'spirals', RunFlags> = {
  linreg: { steps: 1000, lr: 0.02, sgdLr: 0.005, schedule: 'cosine', every: 100 },
  spirals: { steps: 500, lr: 0.01, sgdLr: 1, schedule: 'constant', every: 100 },
};

/**
 * Parses `args` (process.argv.slice(2)); a flag given applies to every problem that runs. Throws
 * a RangeError naming the flag and showing the usage on a bad value or an unknown flag.
 *
 * @example
 * ```ts
 * parseFlags(['--problem', 'spirals', '--steps', '200']).spirals.steps; // 200
 * ```
 */
export function parseFlags(args: readonly string[]): Flags {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        problem: { type: 'string', default: 'all' },
        steps: { type: 'string' },
        lr: { type: 'string' },
        'sgd-lr': { type: 'string' },
        schedule: { type: 'string' },
        every: { type: 'string' },
        'max-gap': { type: 'string', default: '1e-3' },
        'min-accuracy': { type: 'string', default: '0.95' },
        cpu: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    throw new RangeError(`${(error as Error).message}\n${USAGE}`);
  }
  const number = (name: string, text: string | undefined, ok: (x: number) => boolean): number | undefined => {
    if (text === undefined) return undefined;
    const x = Number(text);
    if (text.trim() === '' || !ok(x)) throw new RangeError(`--${name} ${text} is out of range.\n${USAGE}`);
    return x;
  };
  const positiveInteger = (x: number) => Number.isSafeInteger(x) && x > 0;
  const positive = (x: number) => Number.isFinite(x) && x > 0;
  if (values.problem !== 'linreg' && values.problem !== 'spirals' && values.problem !== 'all') {
    throw new RangeError(`--problem must be linreg, spirals or all, got ${values.problem}.\n${USAGE}`);
  }
  if (values.schedule !== undefined && values.schedule !== 'cosine' && values.schedule !== 'constant') {
    throw new RangeError(`--schedule must be cosine or constant.\n${USAGE}`);
  }
  const given: Partial<RunFlags> = {
    steps: number('steps', values.steps, positiveInteger),
    lr: number('lr', values.lr, positive),
    sgdLr: number('sgd-lr', values['sgd-lr'], positive),
    schedule: values.schedule as RunFlags['schedule'] | undefined,
    every: number('every', values.every, positiveInteger),
  };
  const merge = (defaults: RunFlags): RunFlags => {
    const out = { ...defaults };
    for (const [key, value] of Object.entries(given)) if (value !== undefined) (out as Record<string, unknown>)[key] = value;
    return out;
  };
  return {
    problem: values.problem,
    linreg: merge(RUN_DEFAULTS.linreg),
    spirals: merge(RUN_DEFAULTS.spirals),
    maxGap: number('max-gap', values['max-gap'], (x) => x > 0)!,
    minAccuracy: number('min-accuracy', values['min-accuracy'], (x) => x >= 0 && x <= 1)!,
    cpu: values.cpu,
    help: values.help,
  };
}

/**
 * The learning rate at `step` of `run.steps`: constant, or a cosine from `lr` down to 0.
 *
 * @example
 * ```ts
 * lrAt({ ...RUN_DEFAULTS.linreg, steps: 100 }, 0.02, 50); // 0.01: halfway down the cosine
 * ```
 */
export function lrAt(run: RunFlags, lr: number, step: number): number {
  return run.schedule === 'constant' ? lr : lr * 0.5 * (1 + Math.cos((Math.PI * step) / run.steps));
}
