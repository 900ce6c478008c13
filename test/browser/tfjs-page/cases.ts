/** What the TF.js page reports, shared by the page and test/browser/tfjs.test.ts. */
import type { FitComparison } from '../../tfjs/fit-comparison';
import type { FineTuneResult, ReadInFlightResult, VariableListResult } from '../../tfjs/scenarios';

/** One case's figures (what the test asserts on), or why it could not run. */
export type TfjsCase =
  | { readonly name: 'fit'; readonly label: string; readonly result: FitComparison }
  | { readonly name: 'save-load'; readonly bitIdentical: boolean; readonly className: string; readonly iterations: number }
  | {
    /** Issue 20: stateDtype 'int8-blockwise' through model.save / loadLayersModel. */
    readonly name: 'save-load-8bit';
    readonly bitIdentical: boolean;
    readonly stateDtype: string;
    /** The optimizer's weight specs of 8-bit state, as `name:dtype`. */
    readonly eightBitSpecs: readonly string[];
    readonly iterations: number;
  }
  | { readonly name: 'cached'; readonly worstUlps: number; readonly steps: number; readonly cachedBeforeEachStep: boolean }
  | { readonly name: 'leaks'; readonly before: Counts; readonly after: Counts; readonly labelledAfterDispose: number; readonly labelledWhileTraining: number }
  | { readonly name: 'variable-list'; readonly label: string; readonly result: VariableListResult }
  | { readonly name: 'fine-tune'; readonly label: string; readonly result: FineTuneResult }
  | {
    readonly name: 'read-in-flight';
    readonly result: ReadInFlightResult;
    /** Whether dataSync() was run (probe.html found the canvas readback it uses working). */
    readonly dataSync: boolean;
  }
  | {
    readonly name: 'first-step';
    readonly warm: string | undefined;
    readonly cold: string | undefined;
    readonly warmMs: number;
    readonly coldMs: number;
    readonly constructorCompiles: number;
  }
  | { readonly name: 'copies'; readonly variables: number; readonly firstStep: number; readonly perStep: number }
  | { readonly name: 'error'; readonly label: string; readonly message: string };

export interface Counts {
  readonly tensors: number;
  readonly gpuBytesAllocated: number | undefined;
  readonly liveGpuBuffers: number;
}

export interface TfjsPageResults {
  readonly done: true;
  readonly adapter: string;
  readonly cases: readonly TfjsCase[];
  /** Validation errors popped around each case, and uncapturederror events. */
  readonly gpuErrors: readonly string[];
  readonly fatal?: string;
}

declare global {
  interface Window {
    __tfjs?: TfjsPageResults;
  }
}
