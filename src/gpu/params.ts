/**
 * The caller's parameters: what `new RMSProp(device, params, options)` accepts, and the checks that
 * turn it into byte ranges before any GPU object is made.
 */
import { ARENA } from './arena.js';
import {
  describe,
  GLOBAL_OPTION_NAMES,
  resolveOptions,
  type RMSPropConfig,
  type RMSPropOptions,
  type ResolvedOptions,
} from '../rule/options.js';
import { splitSchedule, type LrSchedule } from '../rule/schedules.js';

/**
 * One trainable tensor: the caller's parameter and gradient, each a whole `GPUBuffer` or a
 * `GPUBufferBinding` (a range of one). Both hold f32 values, the same number of them, unless the
 * options say `paramDtype` / `gradDtype` 'f16' or 'bf16' (2 bytes per element, two per u32). The optimizer
 * updates `param` in place, reads `grad`, and never copies or destroys either.
 *
 * @example
 * ```ts
 * const spec: ParamSpec = { param: weights, grad: { buffer: grads, offset: 256, size: 4096 }, name: 'fc1.weight' };
 * ```
 */
export interface ParamSpec {
  /**
   * The parameter, updated in place: a whole buffer, or a range `{ buffer, offset?, size? }` of one
   * (offset a multiple of the device's minStorageBufferOffsetAlignment; size defaults to the rest of
   * the buffer). The buffer needs STORAGE usage, and COPY_SRC for `readParams()`.
   */
  param: GPUBuffer | GPUBufferBinding;
  /** The gradient, only read: a buffer or a range of one, as `param`, with as many elements as `param`. */
  grad: GPUBuffer | GPUBufferBinding;
  /** Used in error messages, labels and state dicts; defaults to `param{index}`. */
  name?: string;
}

/**
 * Parameters that share options, as PyTorch's param groups: options given here override the
 * optimizer's options for these parameters.
 *
 * @example
 * ```ts
 * const weightSpecs: ParamSpec[] = [{ param: w1, grad: gw1 }, { param: w2, grad: gw2 }];
 * const biasSpecs: ParamSpec[] = [{ param: b1, grad: gb1 }];
 * new RMSProp(
 *   device,
 *   [{ params: weightSpecs }, { params: biasSpecs, weightDecay: 0 }],
 *   { lr: 1e-3, weightDecay: 1e-4 },
 * );
 * ```
 */
export type ParamGroup = {
  /**
   * The group's parameters, at least one. Parameters are numbered across all groups in order: the
   * numbers a state dict's `groups[g].params` lists.
   */
  params: ParamSpec[];
} & RMSPropConfig;

/** A checked range of a buffer, in bytes. */
export interface ByteRange {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

/** A checked parameter. */
export interface ResolvedParam {
  readonly name: string;
  /** Position in the flattened parameter list. */
  readonly index: number;
  /** Index of its group. */
  readonly group: number;
  /** Number of f32 elements. */
  readonly size: number;
  readonly param: ByteRange;
  readonly grad: ByteRange;
  /** The `ParamArena` the spec came from, if any. */
  readonly arena?: object;
}

export interface ResolvedGroup {
  readonly options: ResolvedOptions;
  readonly params: readonly ResolvedParam[];
  /** The group's lr schedule, if its lr (or the optimizer's, inherited) is a function. */
  readonly schedule?: LrSchedule;
}

// GPUBufferUsage flags, spelled out so that this file needs no WebGPU globals (Node without Dawn).
export const USAGE_STORAGE = 0x80;
export const USAGE_COPY_SRC = 0x04;

/**
 * Checks `params` and `options` and resolves them into groups of byte ranges.
 * Throws a TypeError or RangeError that names the parameter and the fix.
 */
export function resolveParams(
  params: readonly ParamSpec[] | readonly ParamGroup[],
  options: RMSPropConfig | undefined,
  limits: { minStorageBufferOffsetAlignment: number },
): ResolvedGroup[] {
  return groupParams(
    params,
    options,
    (spec, index, group, where, o) => resolveParam(spec, index, group, where, limits, o),
  );
}

/**
 * Splits `params` (specs, or groups of specs with options) into groups with resolved options, and
 * resolves each spec with `resolveOne`; then checks that no parameter overlaps another range.
 * Shared by the GPU optimizer and its CPU twin.
 */
export function groupParams<Spec, P extends Overlappable>(
  params: readonly Spec[] | readonly ({ params: Spec[] } & RMSPropConfig)[],
  options: RMSPropConfig | undefined,
  resolveOne: (spec: Spec, index: number, group: number, where: string, options: ResolvedOptions) => P,
): { options: ResolvedOptions; params: P[]; schedule?: LrSchedule }[] {
  const baseSplit = splitSchedule(options, 'options');
  const base = resolveOptions(baseSplit.options as Partial<RMSPropOptions> | undefined);
  if (!Array.isArray(params)) {
    throw new TypeError(
      `params must be an array of { param, grad } or of param groups { params: [...] }, got ${describe(params)}.`,
    );
  }
  if (params.length === 0) throw new RangeError('params is empty: pass at least one { param, grad }.');
  const isGroup = (x: unknown) => typeof x === 'object' && x !== null && 'params' in x;
  const grouped = params.every(isGroup);
  if (!grouped && params.some(isGroup)) {
    throw new TypeError(
      'params mixes param groups ({ params: [...] }) with single params ({ param, grad }): ' +
      'wrap the single ones in a group.',
    );
  }
  const groups: { options: ResolvedOptions; params: P[]; schedule?: LrSchedule }[] = [];
  let index = 0;
  const specsOf = grouped ? (params as ({ params: Spec[] } & RMSPropConfig)[]) : [{ params: params as Spec[] }];
  specsOf.forEach((group, g) => {
    const where = grouped ? `params[${g}]` : 'params';
    const { params: specs, ...groupOptions } = group;
    if (!Array.isArray(specs) || specs.length === 0) {
      throw new RangeError(`${where}.params is empty: a param group needs at least one { param, grad }.`);
    }
    const split = splitSchedule(groupOptions as RMSPropConfig, where);
    const groupResolved = grouped ? resolveOptions(split.options as Partial<RMSPropOptions>, base, where) : base;
    // A group's own lr (number or schedule) wins; else it follows the optimizer's.
    const schedule = split.schedule ??
      ((groupOptions as RMSPropConfig).lr === undefined ? baseSplit.schedule : undefined);
    for (const key of GLOBAL_OPTION_NAMES) {
      if (groupResolved[key] !== base[key]) {
        throw new TypeError(
          `${where}.${key} is optimizer-wide (one check over every gradient): ` +
          `set it in the optimizer's options, not in a param group.`,
        );
      }
    }
    const resolved = specs.map((spec, i) => resolveOne(
      spec,
      index++,
      g,
      grouped ? `${where}.params[${i}]` : `params[${i}]`,
      groupResolved,
    ));
    groups.push({ options: groupResolved, params: resolved, ...(schedule ? { schedule } : {}) });
  });
  checkOverlaps(groups.flatMap((g) => g.params));
  return groups;
}

/** Names a spec for error messages: `params[2] ('fc.bias')`. Checks the optional name. */
export function specName(spec: unknown, index: number, where: string): { name: string; label: string } {
  if (typeof spec !== 'object' || spec === null) {
    throw new TypeError(`${where} must be { param, grad, name? }, got ${describe(spec)}.`);
  }
  const given = (spec as { name?: unknown }).name;
  if (given !== undefined && typeof given !== 'string') {
    throw new TypeError(`${where}.name must be a string, got ${describe(given)}.`);
  }
  return { name: given ?? `param${index}`, label: given ? `${where} ('${given}')` : where };
}

function resolveParam(
  spec: ParamSpec,
  index: number,
  group: number,
  where: string,
  limits: { minStorageBufferOffsetAlignment: number },
  o: ResolvedOptions,
): ResolvedParam {
  const { name, label } = specName(spec, index, where);
  const halfParam = o.paramDtype !== 'f32';
  const param = toByteRange(spec.param, `${label}.param`, limits, halfParam ? 2 : 4);
  const halfGrad = o.gradDtype !== 'f32';
  const grad = toByteRange(spec.grad, `${label}.grad`, limits, halfGrad ? 2 : 4);
  const arena = (spec as { [ARENA]?: object })[ARENA];
  if (halfGrad) checkLastWord(grad, `${label}.grad`, o.gradDtype);
  if (halfParam) {
    if (arena) {
      throw new TypeError(
        `${label} comes from a ParamArena, whose parameters are f32: use paramDtype 'f32' with an arena.`,
      );
    }
    // 16-bit parameters: 2 bytes each, any count. The shader reads and writes whole u32 words, so the
    // buffer must hold the word that the last element of an odd count shares (its other half is kept).
    checkLastWord(param, `${label}.param`, o.paramDtype);
    const n = param.size / 2;
    const gradBytes = n * (o.gradDtype === 'f32' ? 4 : 2);
    if (grad.size !== gradBytes) {
      throw new RangeError(
        `${label}: grad covers ${grad.size} bytes but ${n} ${o.gradDtype} gradients take ${gradBytes} ` +
        `(param holds ${n} ${o.paramDtype} values, ${param.size} bytes).`,
      );
    }
    return { name, index, group, size: n, param, grad };
  }
  if (o.gradDtype !== 'f32') {
    if (arena) {
      throw new TypeError(
        `${label} comes from a ParamArena, whose gradients are f32: use gradDtype 'f32' with an arena.`,
      );
    }
    // 16-bit gradients: 2 bytes per element of the f32 parameter.
    if (grad.size * 2 !== param.size) {
      throw new RangeError(
        `${label}: grad covers ${grad.size} bytes but param ${param.size}: ` +
        `with gradDtype '${o.gradDtype}' the gradient holds 2 bytes per f32 parameter.`,
      );
    }
  } else if (param.size !== grad.size) {
    throw new RangeError(
      `${label}: grad covers ${grad.size} bytes but param covers ${param.size}: ` +
      'they must hold the same number of f32 values.',
    );
  }
  return { name, index, group, size: param.size / 4, param, grad, ...(arena ? { arena } : {}) };
}

/**
 * 16-bit values are read (and parameters written) as whole u32 words: an odd count's last element
 * shares a word with the next 2 bytes, which the buffer must hold (they are read and kept, never changed).
 */
function checkLastWord(range: ByteRange, where: string, dtype: string): void {
  const end = range.offset + Math.ceil(range.size / 4) * 4;
  if (end > range.buffer.size) {
    throw new RangeError(
      `${where}: ${range.size / 2} ${dtype} values end mid-word at byte ${range.offset + range.size} ` +
      `of a ${range.buffer.size}-byte buffer: make the buffer at least ${end} bytes ` +
      '(its last half-word is left untouched).',
    );
  }
}

function isBuffer(x: unknown): x is GPUBuffer {
  return typeof x === 'object' && x !== null && typeof (x as GPUBuffer).size === 'number' &&
    typeof (x as GPUBuffer).usage === 'number' && typeof (x as GPUBuffer).getMappedRange === 'function';
}

/** A GPUBuffer or GPUBufferBinding, checked and turned into a byte range. */
export function toByteRange(
  x: GPUBuffer | GPUBufferBinding,
  where: string,
  limits: { minStorageBufferOffsetAlignment: number },
  elementBytes: 2 | 4 = 4,
): ByteRange {
  const buffer = isBuffer(x) ? x : typeof x === 'object' && x !== null && isBuffer(x.buffer) ? x.buffer : undefined;
  if (!buffer) {
    throw new TypeError(
      `${where} must be a GPUBuffer or a GPUBufferBinding { buffer, offset?, size? }, got ${describe(x)}.`,
    );
  }
  const binding: Partial<GPUBufferBinding> = buffer === x ? {} : (x as GPUBufferBinding);
  const offset = binding.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > buffer.size) {
    throw new RangeError(`${where}.offset must be an integer in [0, buffer.size = ${buffer.size}], got ${offset}.`);
  }
  const size = binding.size ?? buffer.size - offset;
  if (!Number.isSafeInteger(size) || size < 0 || offset + size > buffer.size) {
    throw new RangeError(
      `${where}.size must be an integer with offset + size <= buffer.size (${offset} + ${size} > ${buffer.size}).`,
    );
  }
  const label = buffer.label ? ` ('${buffer.label}')` : '';
  if ((buffer.usage & USAGE_STORAGE) === 0) {
    throw new TypeError(
      `${where}: buffer${label} lacks GPUBufferUsage.STORAGE: ` +
      'create it with usage STORAGE (| COPY_SRC | COPY_DST as needed).',
    );
  }
  const align = limits.minStorageBufferOffsetAlignment;
  if (offset % align !== 0) {
    throw new RangeError(
      `${where}.offset is ${offset}, not a multiple of the device's minStorageBufferOffsetAlignment (${align}): ` +
      `align each tensor's offset to ${align} bytes.`,
    );
  }
  if (size === 0) throw new RangeError(`${where} covers 0 bytes: a parameter needs at least one element.`);
  if (size % elementBytes !== 0) {
    throw new RangeError(elementBytes === 4
      ? `${where} covers ${size} bytes, not a multiple of 4: it must hold whole f32 values.`
      : `${where} covers ${size} bytes, an odd number: it must hold whole 16-bit values (2 bytes each).`);
  }
  return { buffer, offset, size };
}

/** What the overlap check needs of a parameter: its name and where its values live. */
export interface Overlappable {
  readonly name: string;
  readonly index: number;
  readonly param: { readonly buffer: object; readonly offset: number; readonly size: number };
  readonly grad: { readonly buffer: object; readonly offset: number; readonly size: number };
}

type Tagged = { range: Overlappable['param']; owner: Overlappable; isParam: boolean };

/**
 * A parameter is written in place: no other parameter's or gradient's range may overlap it
 * (gradients may overlap each other: they are only read). A sweep over ranges sorted by offset.
 */
function checkOverlaps(params: Overlappable[]): void {
  const byBuffer = new Map<object, Tagged[]>();
  for (const p of params) {
    for (const t of [{ range: p.param, owner: p, isParam: true }, { range: p.grad, owner: p, isParam: false }]) {
      const list = byBuffer.get(t.range.buffer) ?? [];
      list.push(t);
      byBuffer.set(t.range.buffer, list);
    }
  }
  for (const list of byBuffer.values()) {
    list.sort((a, b) => a.range.offset - b.range.offset);
    let reachAny: Tagged | undefined, reachParam: Tagged | undefined; // the ranges reaching furthest so far
    const end = (t: Tagged | undefined) => (t ? t.range.offset + t.range.size : -1);
    for (const t of list) {
      const hit = t.isParam ? reachAny : reachParam;
      if (hit && t.range.offset < end(hit)) throw overlapError(t, hit);
      if (end(t) > end(reachAny)) reachAny = t;
      if (t.isParam && end(t) > end(reachParam)) reachParam = t;
    }
  }
}

function overlapError(a: Tagged, b: Tagged): RangeError {
  const [first, second] = a.owner.index < b.owner.index ? [a, b] : [b, a];
  if (a.isParam && b.isParam) {
    const same = a.range.offset === b.range.offset && a.range.size === b.range.size;
    return new RangeError(same
      ? `'${second.owner.name}' repeats the parameter '${first.owner.name}': list each parameter once.`
      : `'${second.owner.name}' overlaps the parameter '${first.owner.name}' in the same buffer: ` +
        'give each parameter its own range.');
  }
  const [param, grad] = a.isParam ? [a, b] : [b, a];
  return new RangeError(
    `the gradient of '${grad.owner.name}' overlaps the parameter '${param.owner.name}': ` +
    'gradients and parameters need separate ranges.',
  );
}
