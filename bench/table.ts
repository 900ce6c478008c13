/**
 * The benchmark's table: one row per tensor set, variant and layout of ours, with TF.js's and the
 * CPU reference's time for the same set and variant, and whether the target is met.
 */
import type { BenchReport, GroupResult, Stat } from './core.js';
import { median } from './timing.js';

/** The target: our step at least this many times faster than TF.js's on the transformer set (on SwiftShader). */
export const TFJS_TARGET = 12;

/** One line of the table, as numbers (also what `--json` writes). */
export interface Row {
  readonly set: string;
  readonly layout: 'separate' | 'arena';
  readonly variant: string;
  readonly params: number;
  readonly bytesPerStep: number;
  readonly ms: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Effective bandwidth: bytesPerStep / time. */
  readonly gbPerS: number;
  /** Of the copy measured alongside. */
  readonly copyGbPerS: number;
  readonly tfjsMs?: number;
  /** TF.js's time over ours: how many times faster ours is. */
  readonly vsTfjs?: number;
  readonly referenceMs: number;
  readonly vsReference: number;
  /** Whether the row is on the transformer set, where the target applies. */
  readonly targeted: boolean;
  readonly verified?: boolean;
}

const gbps = (bytes: number, ms: number) => bytes / (ms * 1e6);
const copyRate = (g: GroupResult) => gbps(g.copy.bytes, g.copy.msPerStep);

/**
 * The rows of a report, as numbers.
 *
 * @example
 * ```ts
 * const slowest = rows(report).sort((a, b) => a.vsTfjs! - b.vsTfjs!)[0];
 * ```
 */
export function rows(report: BenchReport): Row[] {
  return report.groups.flatMap((g) => (['separate', 'arena'] as const).flatMap((layout) => {
    const s: Stat | undefined = g.ours[layout];
    if (!s) return [];
    return [{
      set: g.set,
      layout,
      variant: g.variant,
      params: g.params,
      bytesPerStep: g.bytesPerStep,
      ms: s.msPerStep,
      minMs: s.minMsPerStep,
      maxMs: s.maxMsPerStep,
      gbPerS: gbps(g.bytesPerStep, s.msPerStep),
      copyGbPerS: copyRate(g),
      ...(g.tfjs ? { tfjsMs: g.tfjs.msPerStep, vsTfjs: g.tfjs.msPerStep / s.msPerStep } : {}),
      referenceMs: g.reference.msPerStep,
      vsReference: g.reference.msPerStep / s.msPerStep,
      targeted: g.tensors > 1,
      ...(g.verified?.[layout] !== undefined ? { verified: g.verified[layout] } : {}),
    }];
  }));
}

const fixed = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const ms = (x: number) => (x >= 100 ? fixed(x, 0) : x >= 10 ? fixed(x, 1) : x >= 1 ? fixed(x, 2) : fixed(x, 3));
const ratio = (x: number | undefined) => (x === undefined ? '-' : `${x >= 100 ? fixed(x, 0) : fixed(x, 1)}x`);

function table(header: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((r) => r[c]!.length)));
  const line = (cells: readonly string[]) => cells.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/**
 * The report as text: a header naming the environment, adapter and timing method, the table, and
 * the target's verdict per transformer row.
 *
 * @example
 * ```ts
 * console.log(formatReport(await runBench(env, FULL_CONFIG)));
 * ```
 */
export function formatReport(report: BenchReport): string {
  const all = rows(report);
  const copy = median(report.groups.map(copyRate));
  const out = [
    `== ${report.environment} | adapter: ${report.adapter}${report.isSoftware ? ' (software: a CPU)' : ''}`,
    `   timing: ${report.timing === 'timestamp-query' ? 'GPU timestamps around each batch (timestamp-query)' : 'wall clock to onSubmittedWorkDone'}; ` +
      `median of batches after warm-up; ms per step. Device copy (copyBufferToBuffer, read+write): ${fixed(copy, 2)} GB/s.`,
    '',
    table(
      ['tensor set', 'layout', 'variant', 'B/step', 'ms/step', '(min-max)', 'GB/s', '% copy', 'TF.js ms', 'vs TF.js', 'CPU ms', 'vs CPU', ...(all.some((r) => r.verified !== undefined) ? ['= CPU'] : [])],
      all.map((r) => [
        r.set,
        r.layout === 'arena' ? 'ParamArena' : r.targeted ? 'per tensor' : 'buffer',
        r.variant,
        `${fixed(r.bytesPerStep / 1e6, 1)}MB`,
        ms(r.ms),
        `${ms(r.minMs)}-${ms(r.maxMs)}`,
        fixed(r.gbPerS, 2),
        `${fixed((100 * r.gbPerS) / r.copyGbPerS, 0)}%`,
        r.tfjsMs === undefined ? '-' : ms(r.tfjsMs),
        ratio(r.vsTfjs),
        ms(r.referenceMs),
        ratio(r.vsReference),
        ...(r.verified === undefined ? (all.some((x) => x.verified !== undefined) ? ['-'] : []) : [r.verified ? 'yes' : 'NO']),
      ]),
    ),
    '',
  ];
  const targeted = all.filter((r) => r.targeted && r.vsTfjs !== undefined);
  if (targeted.length > 0) {
    out.push(`Target: >= ${TFJS_TARGET}x faster than TF.js's step on the transformer set (stated for SwiftShader${report.isSoftware ? '' : '; this adapter is not SwiftShader, shown for reference'}):`);
    for (const r of targeted) {
      out.push(`  ${r.layout === 'arena' ? 'ParamArena' : 'per tensor'}, ${r.variant}: ${ratio(r.vsTfjs)} -> ${r.vsTfjs! >= TFJS_TARGET ? 'met' : 'MISSED'}`);
    }
  }
  for (const w of report.warnings) out.push(`warning: ${w}`);
  out.push(`(${report.environment} took ${fixed(report.durationMs / 1000, 1)} s)`);
  return out.join('\n');
}
