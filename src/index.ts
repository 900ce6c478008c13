/**
 * webgpu-rmsprop: the RMSProp optimizer as one fused WGSL pass over WebGPU storage buffers, exact
 * against PyTorch's `torch.optim.RMSprop`, with a CPU reference of the same rule.
 *
 * @packageDocumentation
 */
export { RMSProp } from './rmsprop.js';
export type { StepOptions } from './rule/step-options.js';
export type { ParamSpec, ParamGroup } from './gpu/params.js';
export {
  DEFAULT_OPTIONS,
  presets,
  resolveOptions,
  type EpsMode,
  type WeightDecayMode,
  type GradDtype,
  type ParamDtype,
  type StateDtype,
  type RMSPropConfig,
  type RMSPropOptions,
  type ResolvedOptions,
} from './rule/options.js';
export { createReferenceState, referenceStep, type MultiplyAdd, type ReferenceState } from './rule/reference.js';
export { gradNormStats, type GradStats, type StepContext } from './rule/reference.js';
export { REDUCE_TARGET_PARTIALS, reduceTargetPartials } from './gpu/reduce-plan.js';
export { schedules, stepDecay, exponential, linearWarmup, cosineWithWarmup, type LrSchedule } from './rule/schedules.js';
export { f16ToF32, bf16ToF32, f32ToF16, f32ToBf16, encodeHalves, decodeHalves } from './rule/half.js';
export {
  ReferenceRMSProp,
  type ReferenceHalfParamSpec,
  type ReferenceParamSpec,
  type ReferenceParamGroup,
  type ReferenceRounding,
} from './rule/reference-optimizer.js';
export {
  BLOCK_SIZE,
  MIN_8BIT_SIZE,
  DYNAMIC_MAP,
  quantizeCode,
  quantizeBlockwise,
  dequantizeBlockwise,
  createBlockwise8State,
  blockwise8Step,
  type Blockwise8State,
} from './rule/blockwise8.js';
export { detectMultiplyAdd } from './gpu/multiply-add.js';
export type { RMSPropState, TensorState } from './state/state-dict.js';
export { convertStateDict } from './state/state-dict.js';
export { WORKGROUP_SIZE } from './gpu/plan.js';
export { ParamArena, ARENA_ALIGNMENT, type ArenaTensor } from './gpu/arena.js';
export {
  stateDictToSafetensors,
  safetensorsToStateDict,
  safetensorsToParams,
  CHECKPOINT_FORMAT,
  CHECKPOINT_FORMAT_VERSION,
} from './state/safetensors.js';
