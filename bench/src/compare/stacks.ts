import { resolve } from "node:path";
import { waitFor } from "@kiln/test-support";
import { REPO_ROOT, type ServiceProcess, startProcess } from "./processes";

/**
 * The two systems under test, each started as real processes and exposed as one
 * OpenAI-compatible base URL:
 *   Kiln      router + worker + gateway (services/*), the path a user's request takes
 *   llama.cpp bench/src/baseline/main.ts, node-llama-cpp with N parallel sequences
 */

export interface Stack {
  readonly name: string;
  readonly baseUrl: string;
  readonly processes: readonly ServiceProcess[];
  /** Stops every process, last started first. */
  stop(): Promise<void>;
}

export interface KilnStackOptions {
  readonly modelDir: string;
  readonly numThreads: number;
  /** e.g. "1GiB" */
  readonly kvCacheMemory: string;
  /** The worker's --weight-dtype (f32, bf16, int8); default f32. */
  readonly weightDtype?: string;
  /** The worker's --kv-cache-dtype (f32, bf16); default f32. */
  readonly kvCacheDtype?: string;
  /** The worker's --activation-dtype (auto, f32, bf16); default auto. */
  readonly activationDtype?: string;
  readonly maxNumSeqs: number;
  /** Extra environment for the router and worker (e.g. KILN_STEP_PROFILE=1). */
  readonly env?: NodeJS.ProcessEnv;
}

async function stopAll(processes: readonly ServiceProcess[]): Promise<void> {
  for (const p of [...processes].reverse()) await p.stop();
}

async function isHealthy(baseUrl: string): Promise<boolean> {
  const res = await fetch(new URL("/health", baseUrl)).catch(() => null);
  return res?.ok === true;
}

/** Router, then a worker registering with it, then the gateway; resolves once /health is OK. */
export async function startKilnStack(opts: KilnStackOptions): Promise<Stack> {
  const started: ServiceProcess[] = [];
  try {
    const router = await startProcess("router", "services/router/src/main.ts", {
      args: ["--port", "0", "--max-num-seqs", String(opts.maxNumSeqs)],
      ...(opts.env ? { env: opts.env } : {}),
    });
    started.push(router);
    const routerAddress = `127.0.0.1:${router.port}`;
    started.push(
      await startProcess("worker", "services/worker/src/main.ts", {
        args: [
          "--model",
          resolve(opts.modelDir),
          "--router",
          routerAddress,
          "--kv-cache-memory",
          opts.kvCacheMemory,
          "--threads",
          String(opts.numThreads),
          "--weight-dtype",
          opts.weightDtype ?? "f32",
          "--kv-cache-dtype",
          opts.kvCacheDtype ?? "f32",
          "--activation-dtype",
          opts.activationDtype ?? "auto",
        ],
        ...(opts.env ? { env: opts.env } : {}),
      }),
    );
    const gateway = await startProcess("gateway", "services/gateway/src/main.ts", {
      args: ["--model", resolve(opts.modelDir), "--router", routerAddress, "--port", "0"],
      ...(opts.env ? { env: opts.env } : {}),
    });
    started.push(gateway);
    const baseUrl = `http://127.0.0.1:${gateway.port}`;
    await waitFor(() => isHealthy(baseUrl), "the Kiln gateway's /health", {
      timeoutMs: 120_000,
      intervalMs: 100,
    });
    return { name: "Kiln", baseUrl, processes: started, stop: () => stopAll(started) };
  } catch (err) {
    await stopAll(started);
    throw err;
  }
}

export interface BaselineStackOptions {
  /** An HF directory (exported to GGUF on first use) or a .gguf file. */
  readonly model: string;
  readonly numThreads: number;
  readonly numSequences: number;
  readonly contextSize: number;
  /** GGUF tensor type of the export (f32, f16, bf16, q8_0). */
  readonly ggufType: string;
}

export async function startBaselineStack(opts: BaselineStackOptions): Promise<Stack> {
  const server = await startProcess("llama.cpp", "bench/src/baseline/main.ts", {
    args: [
      "--model",
      resolve(REPO_ROOT, opts.model),
      "--threads",
      String(opts.numThreads),
      "--sequences",
      String(opts.numSequences),
      "--context-size",
      String(opts.contextSize),
      "--gguf-type",
      opts.ggufType,
      "--port",
      "0",
    ],
    timeoutMs: 600_000, // the first run exports the GGUF
  });
  const baseUrl = `http://127.0.0.1:${server.port}`;
  return { name: "llama.cpp", baseUrl, processes: [server], stop: () => stopAll([server]) };
}
