import {
  attentionWgsl,
  EMBED_WGSL,
  GEMM_WGSL,
  GREEDY_WGSL,
  KV_WRITE_WGSL,
  RMS_NORM_WGSL,
  ROPE_WGSL,
  SILU_MUL_WGSL,
} from "./shaders";

/** Every compute pipeline of the forward pass, compiled once per device and model shape. */
export interface GpuPipelines {
  readonly gemm: GPUComputePipeline;
  readonly rmsNorm: GPUComputePipeline;
  readonly rope: GPUComputePipeline;
  readonly kvWrite: GPUComputePipeline;
  readonly siluMul: GPUComputePipeline;
  readonly embed: GPUComputePipeline;
  readonly attention: GPUComputePipeline;
  readonly greedy: GPUComputePipeline;
  /** Invocations per attention workgroup (they split a token's context). */
  readonly attentionThreads: number;
}

/** Attention keeps THREADS × headDim floats of workgroup memory; 32 threads up to headDim 128. */
export function attentionThreadsFor(headDim: number, maxWorkgroupBytes: number): number {
  let threads = 32;
  while (threads > 1 && (threads * (headDim + 2) * 4 > maxWorkgroupBytes / 2 || threads > 64)) {
    threads /= 2;
  }
  return threads;
}

/**
 * Compiles the WGSL and creates the pipelines (layout "auto"). Uses createComputePipelineAsync
 * so compilation errors reject with the compiler's message instead of a lost device.
 */
export async function createGpuPipelines(
  device: GPUDevice,
  headDim: number,
): Promise<GpuPipelines> {
  const attentionThreads = attentionThreadsFor(
    headDim,
    device.limits.maxComputeWorkgroupStorageSize,
  );
  const make = async (label: string, code: string) => {
    const module = device.createShaderModule({ label, code });
    return device.createComputePipelineAsync({
      label,
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
  };
  const [gemm, rmsNorm, rope, kvWrite, siluMul, embed, attention, greedy] = await Promise.all([
    make("gemm", GEMM_WGSL),
    make("rms_norm", RMS_NORM_WGSL),
    make("rope", ROPE_WGSL),
    make("kv_write", KV_WRITE_WGSL),
    make("silu_mul", SILU_MUL_WGSL),
    make("embed", EMBED_WGSL),
    make("attention", attentionWgsl(headDim, attentionThreads)),
    make("greedy", GREEDY_WGSL),
  ]);
  return { gemm, rmsNorm, rope, kvWrite, siluMul, embed, attention, greedy, attentionThreads };
}
