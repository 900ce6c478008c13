/**
 * A recorded dispatch, made once when an optimizer is built, and the loop that records a list of
 * them into a compute pass (the update's and the gradient pre-pass's): each pipeline is set only
 * when it changes, so a list grouped by pipeline sets each once.
 */
export interface Dispatch {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly x: number;
  readonly y: number;
}

/** Records `dispatches` into `pass`, in order, at group 0; allocates nothing. */
export function encodeDispatches(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[]): void {
  let pipeline: GPUComputePipeline | undefined;
  for (let i = 0; i < dispatches.length; i++) {
    const d = dispatches[i]!;
    if (d.pipeline !== pipeline) pass.setPipeline((pipeline = d.pipeline));
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.x, d.y);
  }
}
