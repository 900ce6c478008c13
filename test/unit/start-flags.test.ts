// `npm start`'s flags (demo/node/flags.ts): per-problem defaults, a flag given applies to every
// problem, and bad values are refused naming the flag and showing the usage.
import { describe, expect, it } from 'vitest';
import { RUN_DEFAULTS, USAGE, lrAt, parseFlags } from '../../demo/node/flags';

describe('npm start flags', () => {
  it('runs both problems by default, each with its own defaults', () => {
    const flags = parseFlags([]);
    expect(flags.problem).toBe('all');
    expect(flags.linreg).toEqual(RUN_DEFAULTS.linreg);
    expect(flags.spirals).toEqual(RUN_DEFAULTS.spirals);
    expect(flags.linreg).toMatchObject({ steps: 1000, lr: 0.02, schedule: 'cosine', every: 100 }); // as before --problem existed
    expect(flags).toMatchObject({ maxGap: 1e-3, minAccuracy: 0.95, cpu: false, help: false });
  });

  it('applies a flag given to every problem, and keeps the old flags working', () => {
    const flags = parseFlags(['--problem', 'spirals', '--steps', '200', '--lr', '0.005', '--schedule', 'cosine', '--every', '50', '--max-gap', '0.1', '--cpu']);
    expect(flags.problem).toBe('spirals');
    for (const run of [flags.linreg, flags.spirals]) expect(run).toMatchObject({ steps: 200, lr: 0.005, schedule: 'cosine', every: 50 });
    expect(flags.spirals.sgdLr).toBe(RUN_DEFAULTS.spirals.sgdLr);
    expect(flags).toMatchObject({ maxGap: 0.1, cpu: true });
    expect(parseFlags(['--sgd-lr', '0.5', '--min-accuracy', '0.9'])).toMatchObject({ spirals: { sgdLr: 0.5 }, linreg: { sgdLr: 0.5 }, minAccuracy: 0.9 });
  });

  it.each([
    [['--problem', 'mnist'], /--problem must be linreg, spirals or all, got mnist/],
    [['--steps', '0'], /--steps 0 is out of range/],
    [['--steps', '1.5'], /--steps 1.5 is out of range/],
    [['--lr=-1'], /--lr -1 is out of range/],
    [['--lr', '-1'], /Option '--lr' argument is ambiguous/], // node:util parseArgs: write --lr=-1
    [['--lr', 'NaN'], /--lr NaN is out of range/],
    [['--sgd-lr', ''], /--sgd-lr  is out of range/],
    [['--schedule', 'linear'], /--schedule must be cosine or constant/],
    [['--min-accuracy', '2'], /--min-accuracy 2 is out of range/],
    [['--bogus'], /Unknown option '--bogus'/],
  ])('refuses %j, naming the flag and showing the usage', (args, message) => {
    expect(() => parseFlags(args)).toThrow(message);
    expect(() => parseFlags(args)).toThrow(USAGE);
  });

  it('follows a cosine from lr to 0, or stays constant', () => {
    const run = { ...RUN_DEFAULTS.linreg, steps: 100, schedule: 'cosine' as const };
    expect(lrAt(run, 0.02, 0)).toBe(0.02);
    expect(lrAt(run, 0.02, 50)).toBeCloseTo(0.01, 15);
    expect(lrAt(run, 0.02, 100)).toBe(0);
    expect(lrAt({ ...run, schedule: 'constant' }, 0.02, 70)).toBe(0.02);
  });
});
