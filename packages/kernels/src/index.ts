export * from "./backend";
export { type CpuBackendOptions, createCpuBackend } from "./cpu/cpu-backend";
export {
  CpuModelRunner,
  type CpuModelRunnerOptions,
  DEFAULT_BLOCK_SIZE,
  loadCpuModelRunner,
} from "./cpu/model-runner";
export { type DenseAttentionShape, referenceCausalAttention } from "./reference/dense-attention";
export { referenceForward, referenceInvFreq } from "./reference/llama-reference";
export * from "./sampling";
