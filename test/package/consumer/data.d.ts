// Types of data.js, for test/package/pack.test.ts (the consumer itself is plain JavaScript).
export declare const STEPS: number;
export declare const SIZES: readonly number[];
export declare const OPTIONS: { lr: number; momentum: number; centered: boolean };
export declare function rng(seed: number): () => number;
export declare function trainingData(): { initial: Float32Array[]; grads: Float32Array[][] };
