import { parseArgs } from "node:util";
import { onOffOption } from "@kiln/engine-core";
import {
  type ActivationDtype,
  type BackendKind,
  DEFAULT_GRAMMAR_THREADS,
  isBackendKind,
  type KvCacheDtype,
  parseActivationDtype,
  parseKvCacheDtype,
  parseWeightDtype,
  type WeightDtype,
} from "@kiln/kernels";

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
  /**
   * "draft": this worker serves its replica's draft model for draft-model speculative decoding
   * (--role, KILN_WORKER_ROLE; ADR 0017); the router steps it and never routes requests to it.
   */
  readonly role: "target" | "draft";
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
  /** Sampler of the CPU backend (KILN_SAMPLING, --sampling; native when the addon loads). */
  readonly sampling: "native" | "typescript" | undefined;
  /** How projections are stored (KILN_WEIGHT_DTYPE, --weight-dtype; f32): f32, bf16 or int8. */
  readonly weightDtype: WeightDtype;
  /**
   * What bf16/int8 projections multiply activations as (KILN_ACTIVATION_DTYPE,
   * --activation-dtype; auto: bf16 for bf16/int8 weights, f32 for f32).
   */
  readonly activationDtype: ActivationDtype;
  /** How the KV pool stores K and V (KILN_KV_CACHE_DTYPE, --kv-cache-dtype; f32): f32 or bf16. */
  readonly kvCacheDtype: KvCacheDtype;
  /**
   * Packed bf16/int8 weights and the CPU KV pool in transparent huge pages (KILN_HUGE_PAGES,
   * --huge-pages on|off; on): fewer TLB misses while decode streams them from memory.
   */
  readonly hugePages: boolean;
  /**
   * How many pause iterations the CPU backend's idle OpenMP helpers spin before they sleep
   * (KILN_OMP_SPINCOUNT, --omp-spincount; unset: GOMP_SPINCOUNT or OMP_WAIT_POLICY as the
   * operator set them, else Kiln's 1000). Passed to libgomp as GOMP_SPINCOUNT (see
   * `applyOmpSpinCount`). Long spins bridge the gap between decode steps on dedicated cores
   * and hurt badly when another busy process shares them (docs/operations.md).
   */
  readonly ompSpinCount: number | null;
  /** Ranks of this worker's tensor-parallel group (KILN_TENSOR_PARALLEL_SIZE; 1). */
  readonly tensorParallelSize: number;
  /** This process's rank in the group (KILN_TP_RANK; 0). Rank 0 serves the router. */
  readonly tpRank: number;
  /** Names the group's shared-memory segment (KILN_TP_GROUP; the replica id). */
  readonly tpGroup: string;
  /** A rank missing a collective this long fails the step with WORKER_LOST (KILN_TP_TIMEOUT_MS). */
  readonly tpTimeoutMs: number;
  /**
   * host:port of every rank, in rank order (KILN_TP_PEERS, comma-separated): the group talks over
   * a TCP ring (ranks on different hosts) instead of shared memory. Null: shared memory.
   */
  readonly tpPeers: readonly string[] | null;
  /** Most whitespace characters in a row inside constrained JSON (KILN_GRAMMAR_MAX_WHITESPACE, --grammar-max-whitespace; 2). */
  readonly grammarMaxWhitespace: number;
  /** Compiled grammars cached (KILN_GRAMMAR_CACHE_SIZE, --grammar-cache-size; 256). */
  readonly grammarCacheSize: number;
  /** Most grammar host threads: compiles and masks off the event loop (KILN_GRAMMAR_THREADS, --grammar-threads; 2). */
  readonly grammarThreads: number;
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
      role: { type: "string" },
      "advertise-host": { type: "string" },
      "max-step-ms": { type: "string" },
      "drain-timeout": { type: "string" },
      "max-loras": { type: "string" },
      "max-lora-rank": { type: "string" },
      "max-cpu-loras": { type: "string" },
      sampling: { type: "string" },
      "weight-dtype": { type: "string" },
      "activation-dtype": { type: "string" },
      "kv-cache-dtype": { type: "string" },
      "huge-pages": { type: "string" },
      "omp-spincount": { type: "string" },
      "tensor-parallel-size": { type: "string" },
      "tp-rank": { type: "string" },
      "tp-group": { type: "string" },
      "tp-timeout-ms": { type: "string" },
      "tp-peers": { type: "string" },
      "grammar-max-whitespace": { type: "string" },
      "grammar-cache-size": { type: "string" },
      "grammar-threads": { type: "string" },
      backend: { type: "string" },
      "webgpu-backend": { type: "string" },
      "webgpu-kv-fraction": { type: "string" },
    },
  });
  const model = values.model ?? env.KILN_MODEL;
  if (!model)
    throw new Error("no model: set KILN_MODEL or pass --model (a directory or a Hub repo id)");
  const threads = values.threads ?? env.KILN_THREADS;
  const ompSpinCount = values["omp-spincount"] ?? env.KILN_OMP_SPINCOUNT;
  const maxLoras = parseIntFlag(values["max-loras"] ?? env.KILN_MAX_LORAS ?? "4", "--max-loras", 0);
  const maxCpuLoras = values["max-cpu-loras"] ?? env.KILN_MAX_CPU_LORAS;
  const sampling = values.sampling ?? env.KILN_SAMPLING;
  if (sampling !== undefined && sampling !== "native" && sampling !== "typescript") {
    throw new Error(`--sampling: expected native or typescript, got "${sampling}"`);
  }
  const replicaId = values["replica-id"] ?? env.KILN_REPLICA_ID ?? "replica-0";
  const role = values.role ?? env.KILN_WORKER_ROLE ?? "target";
  if (role !== "target" && role !== "draft") {
    throw new Error(`--role: expected target or draft, got "${role}"`);
  }
  const tensorParallelSize = parseIntFlag(
    values["tensor-parallel-size"] ?? env.KILN_TENSOR_PARALLEL_SIZE ?? "1",
    "--tensor-parallel-size",
    1,
  );
  const tpRank = parseIntFlag(values["tp-rank"] ?? env.KILN_TP_RANK ?? "0", "--tp-rank", 0);
  if (tpRank >= tensorParallelSize) {
    throw new Error(
      `--tp-rank: ${tpRank} is not below --tensor-parallel-size ${tensorParallelSize}`,
    );
  }
  const peersText = values["tp-peers"] ?? env.KILN_TP_PEERS;
  const tpPeers = peersText ? peersText.split(",").map((p) => p.trim()) : null;
  if (tpPeers !== null && tpPeers.length !== tensorParallelSize) {
    throw new Error(`--tp-peers: ${tpPeers.length} addresses for ${tensorParallelSize} ranks`);
  }
  if (tpPeers?.some((p) => !/^[^\s:]+:\d+$/.test(p))) {
    throw new Error("--tp-peers: expected host:port,host:port,… (one per rank, in rank order)");
  }
  const backend = values.backend ?? env.KILN_BACKEND ?? "cpu";
  if (!isBackendKind(backend)) {
    throw new Error(`--backend: expected cpu, webgpu or auto, got "${backend}"`);
  }
  const kvCacheMemory = values["kv-cache-memory"] ?? env.KILN_KV_CACHE_MEMORY;
  const kvFraction = Number(values["webgpu-kv-fraction"] ?? env.KILN_WEBGPU_KV_FRACTION ?? "0.5");
  if (!(kvFraction > 0 && kvFraction <= 1)) {
    throw new Error("--webgpu-kv-fraction: expected a number in (0, 1]");
  }
  const weightDtype = parseWeightDtype(values["weight-dtype"] ?? env.KILN_WEIGHT_DTYPE ?? "f32");
  return {
    sampling,
    weightDtype,
    activationDtype: parseActivationDtype(
      values["activation-dtype"] ?? env.KILN_ACTIVATION_DTYPE ?? "auto",
      weightDtype,
    ),
    kvCacheDtype: parseKvCacheDtype(values["kv-cache-dtype"] ?? env.KILN_KV_CACHE_DTYPE ?? "f32"),
    hugePages: onOffOption(values["huge-pages"] ?? env.KILN_HUGE_PAGES, true, "--huge-pages"),
    ompSpinCount:
      ompSpinCount === undefined ? null : parseIntFlag(ompSpinCount, "--omp-spincount", 0),
    tensorParallelSize,
    tpPeers,
    tpRank,
    tpGroup: values["tp-group"] ?? env.KILN_TP_GROUP ?? replicaId,
    tpTimeoutMs: parseIntFlag(
      values["tp-timeout-ms"] ?? env.KILN_TP_TIMEOUT_MS ?? "10000",
      "--tp-timeout-ms",
      1,
    ),
    backend,
    dawnBackend: values["webgpu-backend"] ?? env.KILN_WEBGPU_BACKEND ?? undefined,
    webgpuKvFraction: kvFraction,
    isKvCacheMemorySet: kvCacheMemory !== undefined,
    maxLoras,
    grammarMaxWhitespace: parseIntFlag(
      values["grammar-max-whitespace"] ?? env.KILN_GRAMMAR_MAX_WHITESPACE ?? "2",
      "--grammar-max-whitespace",
      0,
    ),
    grammarCacheSize: parseIntFlag(
      values["grammar-cache-size"] ?? env.KILN_GRAMMAR_CACHE_SIZE ?? "256",
      "--grammar-cache-size",
      1,
    ),
    grammarThreads: parseIntFlag(
      values["grammar-threads"] ?? env.KILN_GRAMMAR_THREADS ?? String(DEFAULT_GRAMMAR_THREADS),
      "--grammar-threads",
      1,
    ),
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
    replicaId,
    role,
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

/**
 * Hands `--omp-spincount` to libgomp as GOMP_SPINCOUNT. libgomp reads its environment once,
 * when oneDNN loads it on the backend's first product, and a worker_thread's `process.env` is
 * a copy: so this sets the process environment from the main thread before the backend starts
 * (ADR 0002). A count of its own wins over the operator's GOMP_SPINCOUNT.
 */
export function applyOmpSpinCount(opts: Pick<WorkerOptions, "ompSpinCount">): void {
  if (opts.ompSpinCount !== null) process.env.GOMP_SPINCOUNT = String(opts.ompSpinCount);
}
