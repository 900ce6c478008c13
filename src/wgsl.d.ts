// WGSL files are imported as strings through Vite's `?raw` suffix, and inlined into dist/index.js.
declare module '*.wgsl?raw' {
  const source: string;
  export default source;
}
