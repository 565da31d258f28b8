import { firstServedModel } from "../serve/client";
import type { StepProfileLine, WorkerStepProfileLine } from "./report";
import { type Stack, startBaselineStack, startKilnStack } from "./stacks";

/** A system under test, started and ready for the load generator. */
export interface StartedSystem {
  readonly name: string;
  readonly baseUrl: string;
  /** The name its /v1/models lists first. */
  readonly modelName: string;
  /** The router's step-profile lines so far (empty for llama.cpp or without profiling). */
  stepProfileLines(): StepProfileLine[];
  /** The worker's step-profile lines so far. */
  workerProfileLines(): WorkerStepProfileLine[];
  /** Its processes, for CPU accounting. */
  readonly processes: readonly { readonly name: string; readonly pid: number | undefined }[];
  stop(): Promise<void>;
}

export interface SystemOptions {
  readonly modelDir: string;
  readonly numThreads: number;
  /** Kiln: --max-num-seqs; llama.cpp: parallel sequences. */
  readonly maxConcurrency: number;
  readonly kvCacheMemory: string;
  /** llama.cpp context per sequence. */
  readonly contextSize: number;
  /** Kiln: run the router with KILN_STEP_PROFILE=1. */
  readonly isProfiled: boolean;
  /** Kiln's --weight-dtype and the matching GGUF type for llama.cpp (`--weights`). */
  readonly weightDtype: string;
  readonly ggufType: string;
  /** Kiln's --kv-cache-dtype (`--kv-cache-dtype`; llama.cpp keeps its default F16 cache). */
  readonly kvCacheDtype: string;
  /** Kiln's --activation-dtype (`--activation-dtype`). */
  readonly activationDtype: string;
}

async function startStack(name: string, opts: SystemOptions): Promise<Stack> {
  if (name === "kiln") {
    return startKilnStack({
      modelDir: opts.modelDir,
      numThreads: opts.numThreads,
      kvCacheMemory: opts.kvCacheMemory,
      weightDtype: opts.weightDtype,
      kvCacheDtype: opts.kvCacheDtype,
      activationDtype: opts.activationDtype,
      maxNumSeqs: Math.max(opts.maxConcurrency, 16),
      ...(opts.isProfiled ? { env: { KILN_STEP_PROFILE: "1" } } : {}),
    });
  }
  if (name === "llama.cpp") {
    return startBaselineStack({
      model: opts.modelDir,
      numThreads: opts.numThreads,
      numSequences: opts.maxConcurrency,
      contextSize: opts.contextSize,
      ggufType: opts.ggufType,
    });
  }
  throw new Error(`unknown system ${name}: kiln or llama.cpp`);
}

function linesOf(stack: Stack, event: string): Record<string, unknown>[] {
  return stack.processes.flatMap((p) => p.jsonLines).filter((l) => l.event === event);
}

export async function startSystem(name: string, opts: SystemOptions): Promise<StartedSystem> {
  console.log(`starting ${name}…`);
  const stack = await startStack(name, opts);
  try {
    const modelName = await firstServedModel(stack.baseUrl, null);
    return {
      name,
      baseUrl: stack.baseUrl,
      modelName,
      stepProfileLines: () => linesOf(stack, "step-profile") as unknown as StepProfileLine[],
      workerProfileLines: () =>
        linesOf(stack, "worker-step-profile") as unknown as WorkerStepProfileLine[],
      processes: stack.processes.map((p) => ({ name: p.name, pid: p.pid })),
      stop: () => stack.stop(),
    };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}
