import { parseArgs } from "node:util";
import { type BackendKind, isBackendKind } from "@kiln/kernels";

export interface WorkerOptions {
  /** A local model directory or a Hugging Face repo id. */
  readonly model: string;
  readonly host: string;
  /** 0 picks a free port (printed on stdout once listening). */
  readonly port: number;
  /** Bytes of KV cache the worker allocates; the number of blocks follows from the model shape. */
  readonly kvCacheBytes: number;
  /** False when neither --kv-cache-memory nor KILN_KV_CACHE_MEMORY was given (kvCacheBytes is the CPU default). */
  readonly isKvCacheMemorySet: boolean;
  /** Compute backend (KILN_BACKEND, --backend; cpu). */
  readonly backend: BackendKind;
  /** Dawn backend to try first (KILN_WEBGPU_BACKEND, --webgpu-backend: vulkan, opengles, …), or undefined. */
  readonly dawnBackend: string | undefined;
  /** Share of the adapter's storage-binding limit a default WebGPU KV pool takes (KILN_WEBGPU_KV_FRACTION; 0.5). */
  readonly webgpuKvFraction: number;
  readonly blockSize: number;
  readonly numThreads: number | undefined;
  /** Router address to register with (host:port), or null to wait to be dialled. */
  readonly routerAddress: string | null;
  readonly replicaId: string;
  /** Host the router should dial to reach this worker. */
  readonly advertiseHost: string;
  /** A step running longer than this makes Health answer NOT_SERVING (a wedged worker). */
  readonly maxStepMs: number;
  /** After SIGTERM, exit at the latest after this long even if the router never released it. */
  readonly drainTimeoutMs: number;
  /** LoRA slots resident in the backend (KILN_MAX_LORAS, --max-loras; 4). */
  readonly maxLoras: number;
  /** Highest LoRA rank accepted (KILN_MAX_LORA_RANK, --max-lora-rank; 64). */
  readonly maxLoraRank: number;
  /** Parsed adapters cached in host memory (KILN_MAX_CPU_LORAS, --max-cpu-loras; max-loras). */
  readonly maxCpuLoras: number;
}

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "512MiB", "2g", "1048576" → bytes. Throws a message naming the flag on anything else. */
export function parseBytes(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) throw new Error(`${flag}: expected a size such as 512MiB or 2GiB, got "${text}"`);
  return Math.floor(Number(match[1]) * UNITS[match[2]!.toLowerCase()]!);
}

function parseIntFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer ≥ ${min}`);
  return n;
}

/** Flags win over environment variables, which win over defaults. */
export function parseWorkerOptions(argv: readonly string[], env: NodeJS.ProcessEnv): WorkerOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      model: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "kv-cache-memory": { type: "string" },
      "block-size": { type: "string" },
      threads: { type: "string" },
      router: { type: "string" },
      "replica-id": { type: "string" },
      "advertise-host": { type: "string" },
      "max-step-ms": { type: "string" },
      "drain-timeout": { type: "string" },
      "max-loras": { type: "string" },
      "max-lora-rank": { type: "string" },
      "max-cpu-loras": { type: "string" },
      backend: { type: "string" },
      "webgpu-backend": { type: "string" },
      "webgpu-kv-fraction": { type: "string" },
    },
  });
  const model = values.model ?? env.KILN_MODEL;
  if (!model)
    throw new Error("no model: set KILN_MODEL or pass --model (a directory or a Hub repo id)");
  const threads = values.threads ?? env.KILN_THREADS;
  const maxLoras = parseIntFlag(values["max-loras"] ?? env.KILN_MAX_LORAS ?? "4", "--max-loras", 0);
  const maxCpuLoras = values["max-cpu-loras"] ?? env.KILN_MAX_CPU_LORAS;
  const backend = values.backend ?? env.KILN_BACKEND ?? "cpu";
  if (!isBackendKind(backend)) {
    throw new Error(`--backend: expected cpu, webgpu or auto, got "${backend}"`);
  }
  const kvCacheMemory = values["kv-cache-memory"] ?? env.KILN_KV_CACHE_MEMORY;
  const kvFraction = Number(values["webgpu-kv-fraction"] ?? env.KILN_WEBGPU_KV_FRACTION ?? "0.5");
  if (!(kvFraction > 0 && kvFraction <= 1)) {
    throw new Error("--webgpu-kv-fraction: expected a number in (0, 1]");
  }
  return {
    backend,
    dawnBackend: values["webgpu-backend"] ?? env.KILN_WEBGPU_BACKEND ?? undefined,
    webgpuKvFraction: kvFraction,
    isKvCacheMemorySet: kvCacheMemory !== undefined,
    maxLoras,
    maxLoraRank: parseIntFlag(
      values["max-lora-rank"] ?? env.KILN_MAX_LORA_RANK ?? "64",
      "--max-lora-rank",
      1,
    ),
    maxCpuLoras:
      maxCpuLoras === undefined ? maxLoras : parseIntFlag(maxCpuLoras, "--max-cpu-loras", 0),
    model,
    host: values.host ?? env.KILN_WORKER_HOST ?? "127.0.0.1",
    port: parseIntFlag(values.port ?? env.KILN_WORKER_PORT ?? "0", "--port", 0),
    kvCacheBytes: parseBytes(kvCacheMemory ?? "512MiB", "--kv-cache-memory"),
    blockSize: parseIntFlag(values["block-size"] ?? env.KILN_BLOCK_SIZE ?? "16", "--block-size", 1),
    numThreads: threads === undefined ? undefined : parseIntFlag(threads, "--threads", 1),
    routerAddress: values.router ?? env.KILN_ROUTER_ADDRESS ?? null,
    replicaId: values["replica-id"] ?? env.KILN_REPLICA_ID ?? "replica-0",
    advertiseHost: values["advertise-host"] ?? env.KILN_ADVERTISE_HOST ?? "127.0.0.1",
    maxStepMs: parseIntFlag(
      values["max-step-ms"] ?? env.KILN_WORKER_MAX_STEP_MS ?? "120000",
      "--max-step-ms",
      1,
    ),
    drainTimeoutMs:
      1000 *
      parseIntFlag(
        values["drain-timeout"] ?? env.KILN_WORKER_DRAIN_TIMEOUT_S ?? "30",
        "--drain-timeout",
        0,
      ),
  };
}
