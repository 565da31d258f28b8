import type { Worker } from "node:worker_threads";
import type { Backend, BackendInfo, BackendOptions, StepInput, StepOutput } from "../backend";
import type { TensorParallelInit } from "../collectives/tp-thread";
import { awaitThreadReady, startEntryThread } from "../thread-entry";
import { DEFAULT_BLOCK_SIZE } from "./model-runner";
import type { CpuSampling } from "./native-sampling";
import type { CpuWorkerInit, CpuWorkerMessage, StepRequestMessage } from "./worker-protocol";

export interface CpuBackendOptions extends BackendOptions {
  /**
   * Threads the native kernels may use (one OpenMP team, led by the backend's thread, runs the
   * gemm and attention); OpenMP's default (all CPUs of the process) when absent. The rest of the
   * forward pass runs on the backend's one thread.
   */
  readonly numThreads?: number;
  /** Sampler (see CpuModelRunnerOptions.sampling); native when the addon loads by default. */
  readonly sampling?: CpuSampling;
  /** Run one rank of a tensor-parallel group (ADR 0018) instead of the whole model. */
  readonly tensorParallel?: TensorParallelInit;
}

interface PendingStep {
  readonly id: number;
  readonly resolve: (output: StepOutput) => void;
  readonly reject: (err: Error) => void;
}

/**
 * The CPU backend: a CpuModelRunner in a worker thread, so a step never blocks the caller's
 * event loop. Inputs are copied to the thread (they are small); logits come back transferred.
 */
class CpuBackend implements Backend {
  readonly info: BackendInfo;
  private readonly worker: Worker;
  private pending: PendingStep | null = null;
  private nextId = 0;
  /** Set once the thread is gone (disposed, crashed or exited): every later step rejects. */
  private deathReason: string | null = null;
  private readonly exited: Promise<void>;

  constructor(worker: Worker, info: BackendInfo) {
    this.worker = worker;
    this.info = info;
    this.exited = new Promise((resolve) => worker.once("exit", () => resolve()));
    worker.on("message", (msg: CpuWorkerMessage) => this.onMessage(msg));
    worker.on("error", (err) => this.fail(`CPU backend thread crashed: ${err.message}`));
    worker.on("exit", (code) => this.fail(`CPU backend thread exited with code ${code}`));
  }

  step(input: StepInput): Promise<StepOutput> {
    if (this.deathReason !== null) return Promise.reject(new Error(this.deathReason));
    if (this.pending !== null) {
      return Promise.reject(new Error("CPU backend: a step is already running; await it first"));
    }
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending = { id, resolve, reject };
      const msg: StepRequestMessage = { type: "step", id, input };
      try {
        this.worker.postMessage(msg);
      } catch (err) {
        // Something in the input cannot be cloned (a function in a SampleRequest, say).
        this.pending = null;
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  deadReason(): string | null {
    return this.deathReason;
  }

  async dispose(): Promise<void> {
    if (this.deathReason === null) this.fail("CPU backend is disposed");
    await this.worker.terminate();
    await this.exited;
  }

  private onMessage(msg: CpuWorkerMessage): void {
    const pending = this.pending;
    if (msg.type !== "step-result" && msg.type !== "step-error") return;
    if (pending === null || pending.id !== msg.id) return;
    this.pending = null;
    if (msg.type === "step-result") pending.resolve(msg.output);
    else pending.reject(new Error(msg.message));
  }

  private fail(reason: string): void {
    this.deathReason ??= reason;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(new Error(reason));
  }
}

/**
 * Starts a thread, loads `modelDir` into it and allocates `numBlocks` KV blocks there. Rejects
 * (and stops the thread) if the model cannot be loaded. The caller must `dispose()` the backend:
 * its thread keeps the process alive.
 */
export async function createCpuBackend(opts: CpuBackendOptions): Promise<Backend> {
  const init: CpuWorkerInit = {
    modelDir: opts.modelDir,
    numBlocks: opts.numBlocks,
    blockSize: opts.blockSize ?? DEFAULT_BLOCK_SIZE,
    numThreads: opts.numThreads ?? null,
    maxLoras: opts.maxLoras ?? 0,
    maxLoraRank: opts.maxLoraRank ?? 64,
    maxCpuLoras: opts.maxCpuLoras ?? opts.maxLoras ?? 0,
    sampling: opts.sampling ?? null,
    weightDtype: opts.weightDtype ?? "f32",
    activationDtype: opts.activationDtype ?? "f32",
    kvCacheDtype: opts.kvCacheDtype ?? "f32",
    tensorParallel: opts.tensorParallel ?? null,
  };
  // The thread entry is cpu-worker.ts (source) or cpu-worker.js (the service bundle).
  const worker = startEntryThread(import.meta.url, "cpu-worker", init);
  const info = await awaitThreadReady<CpuWorkerMessage, BackendInfo>(
    worker,
    "CPU backend thread",
    (msg) => (msg as Extract<CpuWorkerMessage, { type: "ready" }>).info,
  );
  // The thread waits for deferred grammar masks while the caller's event loop fills them.
  return new CpuBackend(worker, { ...info, acceptsDeferredMasks: true, runsDecodeSteps: true });
}
