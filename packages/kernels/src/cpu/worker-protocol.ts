import type { BackendInfo, KvCacheDtype, StepInput, StepOutput } from "../backend";
import type { TensorParallelInit } from "../collectives/tp-thread";

/** Messages between `CpuBackend` (the caller's thread) and `cpu-worker.ts` (its thread). */

/** `workerData` of the thread: everything it needs to load the model and the KV pool. */
export interface CpuWorkerInit {
  readonly modelDir: string;
  readonly numBlocks: number;
  readonly blockSize: number;
  /** Threads for the native gemm; null keeps OpenMP's default. */
  readonly numThreads: number | null;
  /** LoRA slots, rank limit and host cache size (see BackendOptions). */
  readonly maxLoras: number;
  readonly maxLoraRank: number;
  readonly maxCpuLoras: number;
  /** Sampler; null: the runner's default. */
  readonly sampling: "native" | "typescript" | null;
  /** How projections are stored (KILN_WEIGHT_DTYPE). */
  readonly weightDtype: "f32" | "bf16" | "int8";
  /** What bf16/int8 projections multiply their activations as (KILN_ACTIVATION_DTYPE). */
  readonly activationDtype: "f32" | "bf16";
  /** How the KV pool stores keys and values (KILN_KV_CACHE_DTYPE). */
  readonly kvCacheDtype: KvCacheDtype;
  /** This thread is one rank of a tensor-parallel group (ADR 0018); null: the whole model. */
  readonly tensorParallel: TensorParallelInit | null;
}

/** Caller → thread. Steps are sent one at a time; the next only after the previous reply. */
export interface StepRequestMessage {
  readonly type: "step";
  readonly id: number;
  readonly input: StepInput;
}

/** Thread → caller. `ready` or `init-error` comes exactly once, before any step reply. */
export type CpuWorkerMessage =
  | { readonly type: "ready"; readonly info: BackendInfo }
  | { readonly type: "init-error"; readonly message: string }
  /** `output.logits`, when present, is transferred (not copied). */
  | { readonly type: "step-result"; readonly id: number; readonly output: StepOutput }
  | { readonly type: "step-error"; readonly id: number; readonly message: string };

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
