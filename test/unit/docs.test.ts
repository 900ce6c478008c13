/**
 * Every export of the package's entry points (src/index.ts, and src/tfjs/index.ts for
 * 'webgpu-rmsprop/tfjs') has a JSDoc block with an `@example`: the TypeScript compiler enumerates
 * each module's exports, follows each re-export to its declarations and reads their JSDoc. The
 * failure lists every offender with where it is declared.
 */
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';


interface ExportDoc {
  readonly name: string;
  /** `file:line` of each declaration. */
  readonly where: string[];
  readonly documented: boolean;
  readonly hasExample: boolean;
}

function entryExports(ENTRY: string): ExportDoc[] {
  // Only symbols are needed, not types: no lib or @types files, so the program builds in well under a second.
  const program = ts.createProgram([ENTRY], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    noLib: true,
    types: [],
    noEmit: true,
    skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(ENTRY);
  if (!source) throw new Error(`cannot read ${ENTRY}`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  if (!moduleSymbol) throw new Error(`${ENTRY} is not a module`);
  return checker.getExportsOfModule(moduleSymbol).map((exported) => {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declarations = symbol.declarations ?? [];
    const blocks = declarations.flatMap((d) => ts.getJSDocCommentsAndTags(d).filter(ts.isJSDoc));
    const hasExample = blocks.some((block) => (block.tags ?? []).some((tag) => tag.tagName.text === 'example'));
    const where = declarations.map((d) => {
      const file = d.getSourceFile();
      const { line } = file.getLineAndCharacterOfPosition(d.getStart(file));
      return `${file.fileName.slice(file.fileName.lastIndexOf('/src/') + 1)}:${line + 1}`;
    });
    return { name: exported.name, where, documented: blocks.length > 0, hasExample };
  });
}

describe.each([
  { entry: 'src/index.ts', some: ['RMSProp', 'schedules', 'referenceStep', 'ParamSpec', 'LrSchedule', 'CHECKPOINT_FORMAT'] },
  { entry: 'src/tfjs/index.ts', some: ['tfjsRMSProp', 'registerWebGPURMSProp', 'WEBGPU_RMSPROP_CLASS_NAME', 'WebGPURMSProp', 'TfjsRMSPropConfig'] },
])('API docs of $entry', ({ entry, some }) => {
  const exports = entryExports(fileURLToPath(new URL(`../../${entry}`, import.meta.url)));

  it(`finds the exports of ${entry}, resolved to their declarations`, () => {
    const names = exports.map((e) => e.name);
    // A few of each kind: a class or function, a const, an interface, a type alias.
    for (const name of some) expect(names).toContain(name);
    for (const e of exports) expect(e.where.length, `${e.name} has no declaration`).toBeGreaterThan(0);
    expect(exports.every((e) => e.where.every((w) => w.startsWith('src/')))).toBe(true);
  });

  it('gives every export a JSDoc block with an @example', () => {
    const offenders = exports
      .filter((e) => !e.hasExample)
      .map((e) => `${e.name} (${e.where.join(', ')}): ${e.documented ? 'JSDoc without @example' : 'no JSDoc'}`);
    expect(offenders, `exports of ${entry} lacking an @example:\n${offenders.join('\n')}`).toEqual([]);
  });
});
