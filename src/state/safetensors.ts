/**
 * Checkpoints in the safetensors layout (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header, then the raw little-endian f32 data of each tensor.
 * Python (`safetensors.numpy.load`, `safetensors.torch.load`, or 20 lines of `struct` and `json`)
 * reads the same bytes.
 *
 * Header of a checkpoint of an optimizer over tensors 'w' (centered, momentum) and 'b':
 * ```json
 * { "__metadata__": { "format": "webgpu-rmsprop", "format_version": "1", "step": "10",
 *                     "param_names": "[\"w\",\"b\"]",
 *                     "param_groups": "[{\"lr\":0.01,\"alpha\":0.99,...,\"params\":[0,1]}]" },
 *   "w.square_avg":      { "dtype": "F32", "shape": [1024], "data_offsets": [0, 4096] },
 *   "w.grad_avg":        { "dtype": "F32", "shape": [1024], "data_offsets": [4096, 8192] }, ... }
 * ```
 * State tensors carry PyTorch's names (`square_avg`, `grad_avg`, `momentum_buffer`) after the
 * parameter's name, and `master` the f32 master copy of 16-bit parameters (masterWeights); the
 * parameters themselves, when saved too, are stored under their own names. 8-bit state (stateDtype
 * 'int8-blockwise') stores a tensor's mean square as `square_avg_codes` (U8, one per element) and
 * `square_avg_absmax` (F32, one per 256 elements) instead of `square_avg`; the U8 tensors come last
 * in the data, so that every F32 tensor starts at a multiple of 4 bytes.
 * Metadata values are strings, as the format requires: the options of each group, with its
 * parameters' indices, and the names, are JSON inside those strings; `skipped_steps` is there when
 * the state counts steps that `skipNonFinite` skipped.
 *
 * Loading checks everything (layout, dtypes, shapes, offsets, options, names) before it returns,
 * and throws a TypeError or RangeError that names the field and the fix; `loadStateDict` then
 * checks the state against the optimizer, so a refused checkpoint changes nothing.
 */
import { DEFAULT_OPTIONS, describe, OPTION_NAMES, resolveOptions, type ResolvedOptions } from '../rule/options.js';
import { checkStateDict, paddedState, type RMSPropState, type StateShape, type TensorState } from './state-dict.js';
import { dequantizeBlockwise } from '../rule/blockwise8.js';

/**
 * The `format` metadata of this library's checkpoints.
 *
 * @example
 * ```ts
 * const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
 * const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
 * header.__metadata__.format === CHECKPOINT_FORMAT; // true for a checkpoint of this library
 * ```
 */
export const CHECKPOINT_FORMAT = 'webgpu-rmsprop';
/**
 * The `format_version` this library writes and reads (a string in the metadata, as safetensors requires).
 *
 * @example
 * ```ts
 * header.__metadata__.format_version === String(CHECKPOINT_FORMAT_VERSION); // '1'
 * ```
 */
export const CHECKPOINT_FORMAT_VERSION = 1;

/** The largest header accepted (the limit of the reference implementation, 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

/** Each state slot: its field in `TensorState`, and its suffix in the file (PyTorch's name). */
const SLOTS = [
  { field: 'squareAvg', suffix: 'square_avg' },
  { field: 'gradAvg', suffix: 'grad_avg' },
  { field: 'momentumBuffer', suffix: 'momentum_buffer' },
  // The f32 master copy of 16-bit parameters (paramDtype 'f16' / 'bf16' with masterWeights).
  { field: 'master', suffix: 'master' },
] as const;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Writes a state dict (and optionally the parameters themselves) as safetensors bytes, bit for bit
 * (NaN payloads and -0 included). Parameter names must be unique, as they name the tensors.
 *
 * @param state What `RMSProp.stateDict()` or `ReferenceRMSProp.stateDict()` returned.
 * @param options.params The parameters' values, in the optimizer's order (`readParams()`), to make
 *   a checkpoint that alone resumes training, even on a new device.
 *
 * @example
 * ```ts
 * const bytes = stateDictToSafetensors(await optimizer.stateDict(), { params: await optimizer.readParams() });
 * await fs.writeFile('rmsprop.safetensors', bytes);
 * ```
 */
export function stateDictToSafetensors(
  state: RMSPropState,
  options: { params?: readonly Float32Array[] } = {},
): Uint8Array {
  const where = 'stateDictToSafetensors(state)';
  checkOwnShape(state, where);
  const params = options?.params;
  if (params !== undefined) {
    if (!Array.isArray(params) || params.length !== state.tensors.length) {
      throw new RangeError(
        `${where}: options.params must hold one Float32Array per parameter (${state.tensors.length}), ` +
        `as readParams() returns; got ${Array.isArray(params) ? `${params.length}` : describe(params)}.`,
      );
    }
    params.forEach((p, i) => {
      const t = state.tensors[i]!;
      if (!(p instanceof Float32Array)) {
        throw new TypeError(`${where}: options.params[${i}] ('${t.name}') must be a Float32Array, got ${describe(p)}.`);
      }
      if (p.length !== t.size) {
        throw new RangeError(
          `${where}: options.params[${i}] ('${t.name}') has ${p.length} elements, its state ${t.size}.`,
        );
      }
    });
  }

  // The tensors in order: for each parameter, its value (if saved) and its state slots; 8-bit codes last.
  const entries: { key: string; values: Float32Array | Uint8Array }[] = [];
  const codes: { key: string; values: Uint8Array }[] = [];
  state.tensors.forEach((t, i) => {
    if (params) entries.push({ key: t.name, values: params[i]! });
    for (const { field, suffix } of SLOTS) {
      const values = t[field];
      if (field === 'squareAvg' && t.codes) {
        entries.push({ key: `${t.name}.square_avg_absmax`, values: t.absmax! });
        codes.push({ key: `${t.name}.square_avg_codes`, values: t.codes });
      } else if (values) {
        entries.push({ key: `${t.name}.${suffix}`, values });
      }
    }
  });
  entries.push(...codes);
  const seen = new Map<string, number>([['__metadata__', -1]]);
  entries.forEach(({ key }, i) => {
    if (seen.has(key)) {
      throw new RangeError(
        `${where}: two tensors would both be stored as '${key}': give every parameter a unique name ` +
        `(ParamSpec.name) that is not another's name plus '.square_avg', '.grad_avg', '.momentum_buffer' or '.master'.`,
      );
    }
    seen.set(key, i);
  });

  const header: Record<string, unknown> = {
    __metadata__: {
      format: CHECKPOINT_FORMAT,
      format_version: String(CHECKPOINT_FORMAT_VERSION),
      step: String(state.step),
      ...(state.skippedSteps !== undefined ? { skipped_steps: String(state.skippedSteps) } : {}),
      param_names: JSON.stringify(state.tensors.map((t) => t.name)),
      param_groups: JSON.stringify(state.groups.map((g) => ({ ...pickOptions(g.options), params: [...g.params] }))),
    },
  };
  let at = 0;
  for (const { key, values } of entries) {
    const dtype = values instanceof Uint8Array ? 'U8' : 'F32';
    header[key] = { dtype, shape: [values.length], data_offsets: [at, at + values.byteLength] };
    at += values.byteLength;
  }
  // Padded with spaces to a multiple of 8 bytes, as the reference implementation does, so that the
  // data starts aligned.
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const withPadding = new Uint8Array(padded).fill(0x20);
    withPadding.set(json);
    json = withPadding;
  }
  const out = new Uint8Array(8 + json.length + at);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let offset = 8 + json.length;
  for (const { values } of entries) {
    if (values instanceof Uint8Array) out.set(values, offset);
    else writeF32(out, offset, values);
    offset += values.byteLength;
  }
  return out;
}

/**
 * Reads a state dict from safetensors bytes written by `stateDictToSafetensors`, checking the
 * layout, every tensor's dtype, shape and offsets, the options and the names. Throws a TypeError or
 * RangeError naming what is wrong; pass the result to `loadStateDict`, which checks it against the
 * optimizer (same parameter names and sizes, same options but lr) before it changes anything.
 *
 * @example
 * ```ts
 * const bytes = new Uint8Array(await fs.readFile('rmsprop.safetensors'));
 * optimizer.loadStateDict(safetensorsToStateDict(bytes));
 * ```
 */
export function safetensorsToStateDict(bytes: Uint8Array | ArrayBuffer): RMSPropState {
  return parseCheckpoint(bytes, 'safetensorsToStateDict(bytes)').state;
}

/**
 * The parameters saved in a checkpoint (`stateDictToSafetensors(state, { params })`), in the
 * optimizer's order: upload them into fresh parameter buffers to resume on a new device. Throws a
 * RangeError if the checkpoint holds only the optimizer state.
 *
 * @example
 * ```ts
 * const [w] = safetensorsToParams(bytes);
 * device.queue.writeBuffer(weights, 0, w);
 * ```
 */
export function safetensorsToParams(bytes: Uint8Array | ArrayBuffer): Float32Array<ArrayBuffer>[] {
  const where = 'safetensorsToParams(bytes)';
  const { params } = parseCheckpoint(bytes, where);
  if (!params) {
    throw new RangeError(
      `${where}: the checkpoint holds the optimizer state only: save it with ` +
      'stateDictToSafetensors(state, { params: await optimizer.readParams() }) to keep the parameters too.',
    );
  }
  return params;
}

interface TensorEntry {
  readonly key: string;
  readonly dtype: 'F32' | 'U8';
  readonly shape: number;
  readonly begin: number;
  readonly end: number;
}

function parseCheckpoint(
  input: Uint8Array | ArrayBuffer,
  where: string,
): { state: RMSPropState; params: Float32Array<ArrayBuffer>[] | undefined } {
  const bytes = input instanceof ArrayBuffer ? new Uint8Array(input) : input;
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `${where}: bytes must be a Uint8Array or ArrayBuffer of a .safetensors file, got ${describe(input)}.`,
    );
  }
  const truncated = 'the file is truncated or not a safetensors file';
  if (bytes.length < 8) {
    throw new RangeError(`${where}: ${bytes.length} bytes, fewer than the 8 of the header length: ${truncated}.`);
  }
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength < 2 || headerLength > MAX_HEADER_BYTES || headerLength > bytes.length - 8) {
    throw new RangeError(
      `${where}: the header length field says ${headerLength} bytes, but ${bytes.length - 8} follow it ` +
      `(and at most ${MAX_HEADER_BYTES} are allowed): ${truncated}.`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)));
  } catch (e) {
    throw new TypeError(`${where}: the header is not UTF-8 JSON (${(e as Error).message}): ${truncated}.`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new TypeError(`${where}: the header must be a JSON object, got ${describe(header)}.`);
  }
  const dataStart = 8 + headerLength, dataLength = bytes.length - dataStart;

  // Metadata: string values only, as the format requires.
  const meta = (header as Record<string, unknown>).__metadata__;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    throw new TypeError(
      `${where}: the header has no __metadata__ object: this is not a checkpoint of webgpu-rmsprop ` +
      '(write one with stateDictToSafetensors).',
    );
  }
  for (const [key, value] of Object.entries(meta)) {
    if (typeof value !== 'string') {
      throw new TypeError(
        `${where}: __metadata__.${key} must be a string (safetensors metadata holds strings only), ` +
        `got ${describe(value)}.`,
      );
    }
  }
  const m = meta as Record<string, string>;
  if (m.format !== CHECKPOINT_FORMAT) {
    throw new RangeError(
      `${where}: __metadata__.format is ${describe(m.format)}, not '${CHECKPOINT_FORMAT}': ` +
      'this file is not an optimizer checkpoint of this library.',
    );
  }
  if (m.format_version !== String(CHECKPOINT_FORMAT_VERSION)) {
    throw new RangeError(
      `${where}: __metadata__.format_version is ${describe(m.format_version)}; ` +
      `this version of webgpu-rmsprop reads version ${CHECKPOINT_FORMAT_VERSION}: use the version that wrote it.`,
    );
  }
  if (!/^(0|[1-9][0-9]*)$/.test(m.step ?? '') || !Number.isSafeInteger(Number(m.step))) {
    throw new RangeError(`${where}: __metadata__.step must be a decimal integer >= 0, got ${describe(m.step)}.`);
  }
  const step = Number(m.step);
  const skipped = m.skipped_steps;
  if (skipped !== undefined && (!/^(0|[1-9][0-9]*)$/.test(skipped) || !Number.isSafeInteger(Number(skipped)))) {
    throw new RangeError(
      `${where}: __metadata__.skipped_steps must be a decimal integer >= 0, got ${describe(skipped)}.`,
    );
  }
  const names = parseJson(m.param_names, '__metadata__.param_names', where);
  if (!Array.isArray(names) || names.length === 0 || names.some((n) => typeof n !== 'string')) {
    throw new TypeError(
      `${where}: __metadata__.param_names must be a JSON array of parameter names (strings), got ${describe(names)}.`,
    );
  }
  if (new Set(names).size !== names.length) {
    throw new RangeError(`${where}: __metadata__.param_names repeats a name: every parameter needs its own.`);
  }
  const groups = parseGroups(parseJson(m.param_groups, '__metadata__.param_groups', where), names.length, where);

  // Tensors: F32, one dimension, offsets inside the data, covering it with no gap or overlap.
  const entries = new Map<string, TensorEntry>();
  for (const [key, value] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    entries.set(key, parseEntry(key, value, dataLength, where));
  }
  const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let reach = 0;
  for (const e of sorted) {
    if (e.begin !== reach) {
      throw new RangeError(
        `${where}: tensor '${e.key}' starts at byte ${e.begin} of the data, but the tensors before it end at ` +
        `${reach}: the data must be covered with no gap or overlap (the file is corrupt).`,
      );
    }
    reach = e.end;
  }
  if (reach !== dataLength) {
    throw new RangeError(
      `${where}: the tensors cover ${reach} bytes of data, but ${dataLength} follow the header: ` +
      'the file is truncated or has trailing bytes.',
    );
  }

  // Which tensors this state must have: each parameter's slots, from its group's options.
  const groupOf: number[] = [];
  groups.forEach((g, gi) => g.params.forEach((i) => { groupOf[i] = gi; }));
  const expected = new Set<string>();
  const hasParams = entries.has(names[0]!);
  const entry = (key: string, dtype: 'F32' | 'U8'): TensorEntry => {
    const e = entries.get(key);
    if (!e) {
      throw new RangeError(
        `${where}: tensor '${key}' is missing: the checkpoint does not match its own metadata (the file is corrupt).`,
      );
    }
    if (e.dtype !== dtype) {
      throw new TypeError(`${where}: tensor '${key}' has dtype '${e.dtype}', expected '${dtype}'.`);
    }
    expected.add(key);
    return e;
  };
  const read = (key: string, name: string, size: number): Float32Array<ArrayBuffer> => {
    const e = entry(key, 'F32');
    if (e.shape !== size) {
      throw new RangeError(
        `${where}: tensor '${key}' has shape [${e.shape}], but '${name}.square_avg' has [${size}]: ` +
        'every tensor of a parameter has its size (the file is corrupt).',
      );
    }
    expected.add(key);
    return readF32(bytes, dataStart + e.begin, size);
  };
  const params: Float32Array<ArrayBuffer>[] = [];
  const tensors = (names as string[]).map((name, i): TensorState => {
    const o = groups[groupOf[i]!]!.options;
    if (entries.has(`${name}.square_avg_codes`)) {
      // 8-bit state: the codes give the size; squareAvg is their value (checkStateDict checks the rest).
      const c = entry(`${name}.square_avg_codes`, 'U8');
      const a = entry(`${name}.square_avg_absmax`, 'F32');
      const codes = bytes.slice(dataStart + c.begin, dataStart + c.end);
      const absmax = readF32(bytes, dataStart + a.begin, a.shape);
      if (absmax.length !== Math.ceil(codes.length / 256)) {
        throw new RangeError(
          `${where}: tensor '${name}.square_avg_absmax' has ${absmax.length} blocks for ${codes.length} codes, ` +
          `not ${Math.ceil(codes.length / 256)} (one per 256): the file is corrupt.`,
        );
      }
      if (hasParams) params.push(read(name, name, codes.length));
      return {
        name,
        size: codes.length,
        squareAvg: dequantizeBlockwise(paddedState(codes, absmax)),
        codes,
        absmax,
      };
    }
    const first = entries.get(`${name}.square_avg`);
    if (!first) {
      throw new RangeError(
        `${where}: tensor '${name}.square_avg' is missing: every parameter has one ` +
        '(the file is corrupt or not from this library).',
      );
    }
    const size = first.shape;
    if (hasParams) params.push(read(name, name, size));
    return {
      name,
      size,
      squareAvg: read(`${name}.square_avg`, name, size),
      ...(o.centered ? { gradAvg: read(`${name}.grad_avg`, name, size) } : {}),
      ...(o.momentum > 0 ? { momentumBuffer: read(`${name}.momentum_buffer`, name, size) } : {}),
      ...(o.paramDtype !== 'f32' && o.masterWeights ? { master: read(`${name}.master`, name, size) } : {}),
    };
  });
  for (const key of entries.keys()) {
    if (!expected.has(key)) {
      throw new RangeError(
        `${where}: tensor '${key}' is not one this checkpoint's options and parameters use ` +
        `(a '.grad_avg' needs centered, a '.momentum_buffer' momentum > 0, ` +
        `a '.master' a 16-bit paramDtype with masterWeights): the file does not match its own metadata.`,
      );
    }
  }
  const state: RMSPropState = {
    step,
    groups,
    tensors,
    ...(skipped !== undefined ? { skippedSteps: Number(skipped) } : {}),
  };
  checkOwnShape(state, where);
  return { state, params: hasParams ? params : undefined };
}

function parseJson(text: string | undefined, field: string, where: string): unknown {
  if (text === undefined) {
    throw new TypeError(`${where}: ${field} is missing from the header: the file is not a checkpoint of this library.`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TypeError(`${where}: ${field} is not valid JSON (${(e as Error).message}).`);
  }
}

function parseGroups(value: unknown, count: number, where: string): RMSPropState['groups'] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(
      `${where}: __metadata__.param_groups must be a JSON array of groups ({ ...options, params }), ` +
      `got ${describe(value)}.`,
    );
  }
  const owner = new Array<number | undefined>(count);
  const groups = value.map((g: unknown, gi) => {
    const at = `__metadata__.param_groups[${gi}]`;
    if (typeof g !== 'object' || g === null || Array.isArray(g)) {
      throw new TypeError(`${where}: ${at} must be an object of options and params, got ${describe(g)}.`);
    }
    const { params, ...fields } = g as Record<string, unknown>;
    // Every option is written; one missing comes from a checkpoint written before that option existed,
    // so it trained with the option's default, which resolveOptions fills in (as loadStateDict does).
    const options = resolveOptions(fields as Partial<ResolvedOptions>, DEFAULT_OPTIONS, `${where}: ${at}`);
    if (!Array.isArray(params) || params.length === 0) {
      throw new TypeError(
        `${where}: ${at}.params must be a non-empty array of parameter indices, got ${describe(params)}.`,
      );
    }
    params.forEach((i: unknown) => {
      if (!Number.isSafeInteger(i) || (i as number) < 0 || (i as number) >= count) {
        throw new RangeError(
          `${where}: ${at}.params holds ${describe(i)}, not an index of one of the ${count} parameters in param_names.`,
        );
      }
      if (owner[i as number] !== undefined) {
        throw new RangeError(
          `${where}: parameter ${i} is in ${at} and in param_groups[${owner[i as number]}]: each belongs to one group.`,
        );
      }
      owner[i as number] = gi;
    });
    return { options, params: params as number[] };
  });
  const orphan = owner.findIndex((o) => o === undefined);
  if (orphan >= 0) throw new RangeError(`${where}: parameter ${orphan} is in no group of __metadata__.param_groups.`);
  return groups;
}

function parseEntry(key: string, value: unknown, dataLength: number, where: string): TensorEntry {
  const at = `${where}: tensor '${key}'`;
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${at} must be { dtype, shape, data_offsets }, got ${describe(value)}.`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (dtype !== 'F32' && dtype !== 'U8') {
    throw new TypeError(
      `${at} has dtype ${describe(dtype)}: optimizer state is 'F32' (convert it to float32 before saving), ` +
      'or \'U8\' for the codes of 8-bit state.',
    );
  }
  const width = dtype === 'U8' ? 1 : 4;
  if (!Array.isArray(shape) || shape.length !== 1 || !Number.isSafeInteger(shape[0]) || shape[0] < 1) {
    throw new RangeError(
      `${at} has shape ${JSON.stringify(shape)}: optimizer state is flat, one dimension [n] with n >= 1 ` +
      '(flatten it before saving).',
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((x) => Number.isSafeInteger(x) && x >= 0)) {
    throw new TypeError(
      `${at} has data_offsets ${JSON.stringify(offsets)}: they must be [begin, end], byte offsets into the data.`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin || end > dataLength) {
    throw new RangeError(
      `${at} has data_offsets [${begin}, ${end}], outside the ${dataLength} bytes of data: ` +
      'the file is truncated or corrupt.',
    );
  }
  if (end - begin !== shape[0] * width) {
    throw new RangeError(
      `${at} has shape [${shape[0]}] (${shape[0] * width} bytes of ${dtype}) but data_offsets [${begin}, ${end}] ` +
      `span ${end - begin} bytes: the file is corrupt.`,
    );
  }
  return { key, dtype, shape: shape[0], begin, end };
}

/** Checks a state against itself: its groups' options and parameter lists fit its tensors. */
function checkOwnShape(state: RMSPropState, where: string): void {
  if (typeof state !== 'object' || state === null || !Array.isArray(state.groups) || !Array.isArray(state.tensors)) {
    throw new TypeError(
      `${where}: state must be what stateDict() returned ({ step, groups, tensors }), got ${describe(state)}.`,
    );
  }
  const shape: StateShape = {
    groups: state.groups.map((g, gi) => {
      if (typeof g !== 'object' || g === null || !Array.isArray(g.params)) {
        throw new TypeError(`${where}: state.groups[${gi}] must be { options, params }, got ${describe(g)}.`);
      }
      return {
        options: resolveOptions(g.options, DEFAULT_OPTIONS, `${where}: state.groups[${gi}].options`),
        params: g.params.map((index: number) => {
          const t = Number.isSafeInteger(index) ? state.tensors[index] : undefined;
          if (typeof t !== 'object' || t === null) {
            throw new RangeError(
              `${where}: state.groups[${gi}].params holds ${describe(index)}, not an index into state.tensors.`,
            );
          }
          if (typeof t.name !== 'string') {
            throw new TypeError(`${where}: state.tensors[${index}].name must be a string, got ${describe(t.name)}.`);
          }
          if (!Number.isSafeInteger(t.size) || t.size < 1) {
            throw new RangeError(
              `${where}: state.tensors[${index}] ('${t.name}').size must be an integer >= 1, got ${describe(t.size)}.`,
            );
          }
          return { name: t.name, size: t.size, index };
        }),
      };
    }),
  };
  checkStateDict(state, shape, where);
}

function pickOptions(o: ResolvedOptions): Record<string, unknown> {
  return Object.fromEntries(OPTION_NAMES.map((k) => [k, o[k]]));
}

/** Copies `values` into `out` at byte `offset`, little-endian, bit for bit. */
function writeF32(out: Uint8Array, offset: number, values: Float32Array): void {
  const raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN) {
    out.set(raw, offset);
  } else {
    for (let i = 0; i < raw.length; i += 4) for (let k = 0; k < 4; k++) out[offset + i + k] = raw[i + 3 - k]!;
  }
}

/** `count` little-endian f32 at byte `offset` of `bytes`, copied into a new, aligned array, bit for bit. */
function readF32(bytes: Uint8Array, offset: number, count: number): Float32Array<ArrayBuffer> {
  const copy = bytes.slice(offset, offset + count * 4);
  if (!LITTLE_ENDIAN) for (let i = 0; i < copy.length; i += 4) copy.subarray(i, i + 4).reverse();
  return new Float32Array(copy.buffer);
}
