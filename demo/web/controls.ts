/**
 * The demo's hyperparameter fields: parsing and validation of what a person types, with a message
 * for each bad value. Pure functions (no DOM), so main.ts decides what to show and when to apply.
 */
import { resolveOptions } from '../../src/index';

/** The values a run is made with. */
export interface Hyper {
  /** RMSProp's learning rate. */
  lr: number;
  alpha: number;
  momentum: number;
  centered: boolean;
  /** Plain SGD's learning rate (its own: SGD needs a far larger one than RMSProp on these problems). */
  sgdLr: number;
  /** The run pauses by itself at this step. */
  maxSteps: number;
}

export type NumericField = 'lr' | 'alpha' | 'momentum' | 'sgdLr' | 'maxSteps';

/** Either the value, or why the text is not one. */
export type Parsed = { ok: true; value: number } | { ok: false; message: string };

/** What each field accepts, in words, for the messages. */
const RULES: Record<NumericField, { name: string; accepts: string; check: (x: number) => boolean }> = {
  lr: { name: 'lr', accepts: 'a number > 0, e.g. 0.01', check: (x) => x > 0 },
  alpha: { name: 'alpha', accepts: 'a number from 0 up to (not including) 1, e.g. 0.99', check: (x) => x >= 0 && x < 1 },
  momentum: { name: 'momentum', accepts: 'a number from 0 up to (not including) 1, e.g. 0 or 0.9', check: (x) => x >= 0 && x < 1 },
  sgdLr: { name: 'SGD lr', accepts: 'a number > 0, e.g. 1', check: (x) => x > 0 },
  maxSteps: { name: 'stop after', accepts: 'a whole number of steps ≥ 1, e.g. 2000', check: (x) => Number.isSafeInteger(x) && x >= 1 },
};

/**
 * Parses one field's text. Empty text, anything `Number()` does not read as a finite number
 * (`NaN`, `Infinity`, `1e`, `0x`-less words), and values outside the field's range are refused with a
 * message that says what the field accepts.
 *
 * @example
 * ```ts
 * parseField('alpha', '1'); // { ok: false, message: 'alpha must be … : got 1.' }
 * parseField('lr', '0.02'); // { ok: true, value: 0.02 }
 * ```
 */
export function parseField(field: NumericField, text: string): Parsed {
  const rule = RULES[field];
  const trimmed = text.trim();
  if (trimmed === '') return { ok: false, message: `Enter ${rule.name}: ${rule.accepts}.` };
  const value = Number(trimmed);
  if (!Number.isFinite(value)) return { ok: false, message: `${rule.name} must be ${rule.accepts}: "${trimmed}" is not a finite number.` };
  if (!rule.check(value)) return { ok: false, message: `${rule.name} must be ${rule.accepts}: got ${trimmed}.` };
  if (field === 'lr' || field === 'alpha' || field === 'momentum') {
    // The library's own validation as well, so the demo never hands it a value it would refuse.
    try {
      resolveOptions({ [field]: value });
    } catch (error) {
      return { ok: false, message: (error as Error).message };
    }
  }
  return { ok: true, value };
}

/** Default values of each problem: what measurements with the CPU twins found to work. */
export const DEFAULTS: Record<'spirals' | 'linreg', Hyper> = {
  // RMSProp at PyTorch's default lr reaches loss 0.046 in 400 steps; SGD at lr 0.5, 1 or 2 stays above 0.5.
  spirals: { lr: 0.01, alpha: 0.99, momentum: 0, centered: false, sgdLr: 1, maxSteps: 2000 },
  // RMSProp is at the optimum's 0.255 by step 300; SGD diverges above lr ≈ 0.0105 (2 / the largest
  // curvature, set by the feature of scale 10) and at 0.005 is still at 0.39 by step 400.
  linreg: { lr: 0.01, alpha: 0.99, momentum: 0, centered: false, sgdLr: 0.005, maxSteps: 2000 },
};
