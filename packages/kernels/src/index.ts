export * from "./backend";
export { type CpuBackendOptions, createCpuBackend } from "./cpu/cpu-backend";
export { createKvLayer, type KvLayer } from "./cpu/kv-cache";
export {
  CpuModelRunner,
  type CpuModelRunnerOptions,
  DEFAULT_BLOCK_SIZE,
  loadCpuModelRunner,
} from "./cpu/model-runner";
export { type AttentionShape, PagedAttention } from "./cpu/paged-attention";
export { type DenseAttentionShape, referenceCausalAttention } from "./reference/dense-attention";
export { referenceForward, referenceInvFreq } from "./reference/llama-reference";
export * from "./sampling";
