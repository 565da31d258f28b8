export * from "./backend";
export { NativeAttention, type NativeAttentionOptions } from "./cpu/attention-native";
export { type CpuBackendOptions, createCpuBackend } from "./cpu/cpu-backend";
export {
  createGemm,
  describeNativeGemm,
  type Gemm,
  type GemmOptions,
  loadNativeGemm,
  type NativeGemmInfo,
  nativeGemmInfo,
  type PackedWeights,
  typescriptGemm,
} from "./cpu/gemm";
export { createKvLayer, type KvLayer } from "./cpu/kv-cache";
export { LoraHostCache } from "./cpu/lora-cache";
export { type LoraGroups, type LoraOutputView, LoraSlotTable } from "./cpu/lora-slots";
export {
  type CpuKernels,
  CpuModelRunner,
  type CpuModelRunnerOptions,
  DEFAULT_BLOCK_SIZE,
  loadCpuModelRunner,
  type StepPhase,
  type StepProfiler,
} from "./cpu/model-runner";
export { type AttentionShape, PagedAttention } from "./cpu/paged-attention";
export { type DenseAttentionShape, referenceCausalAttention } from "./reference/dense-attention";
export {
  referenceForward,
  referenceHiddenStates,
  referenceInvFreq,
} from "./reference/llama-reference";
export * from "./sampling";
export {
  BACKEND_KINDS,
  type BackendKind,
  createSelectedBackend,
  isBackendKind,
  type SelectBackendOptions,
  type SelectedBackend,
  webgpuNumBlocks,
} from "./select-backend";
export {
  type AcquireGpuOptions,
  acquireGpuDevice,
  type GpuAdapterDescription,
  type GpuDeviceHandle,
} from "./webgpu/gpu-device";
export {
  createWebGpuBackend,
  createWebGpuBackendOn,
  type WebGpuBackend,
  type WebGpuBackendOptions,
} from "./webgpu/webgpu-backend";
export { WebGpuRunner, type WebGpuRunnerOptions } from "./webgpu/webgpu-runner";
