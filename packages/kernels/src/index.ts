export * from "./backend";
export {
  type Collective,
  GroupLostError,
  isGroupLost,
  type RankStatus,
} from "./collectives/collective";
export {
  peekShmGroup,
  ShmGroup,
  type ShmGroupOptions,
  shmGroupName,
} from "./collectives/shm-group";
export { decodeStep, encodeStep } from "./collectives/step-codec";
export { TcpRing, type TcpRingOptions } from "./collectives/tcp-ring";
export { TensorParallelFollower } from "./collectives/tp-follower";
export { TensorParallelLeader } from "./collectives/tp-leader";
export { loadTensorParallelRank, type TensorParallelInit } from "./collectives/tp-thread";
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
export {
  allowsOnednn,
  KERNEL_TIER_SETTINGS,
  type KernelTier,
  type KernelTierSetting,
  kernelTierSetting,
  resolveKernelTier,
  selectKernelTier,
  tierGemm,
} from "./cpu/kernel-tier";
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
export { setNativeCodeLookup, setNativeHugePages, setNativePrefetch } from "./cpu/native-addon";
export { type CpuSampling, type RowSampler, tryNativeRowSampler } from "./cpu/native-sampling";
export { type AttentionShape, PagedAttention } from "./cpu/paged-attention";
export {
  gemmForWeightDtype,
  type QuantizedGemmOptions,
  quantizedGemm,
} from "./cpu/quantized-gemm";
export {
  attachGemmKernels,
  type GemmKernels,
  gemmKernelsOf,
  type RowKernels,
} from "./cpu/row-kernels";
export { type LoadedTierAddon, loadTierAddonFrom, type TierAddonSource } from "./cpu/tier-addon";
export { createWasmGemm, loadWasmGemmModule, WASM_GEMM_PATH } from "./cpu/wasm-gemm";
export {
  ACTIVATION_DTYPES,
  type ActivationDtype,
  f32ToBf16Bits,
  f32ToF16Bits,
  INT8_GROUP_SIZE,
  parseActivationDtype,
  parseWeightDtype,
  quantizeInt8,
  roundTripWeights,
  WEIGHT_DTYPES,
  type WeightDtype,
} from "./cpu/weight-formats";
export { isPlainDecodeInput, runDecodeSteps } from "./decode-steps";
export * from "./grammar";
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
