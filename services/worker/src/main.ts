/**
 * The worker process: loads the model named by KILN_MODEL into a compute backend, serves the
 * Worker gRPC service, and registers with the router when one is configured. Prints one JSON
 * line `{"event":"listening","port":N}` on stdout once it accepts calls (with `"metricsPort":M`
 * when `/metrics` is served: `--metrics-port`, `KILN_WORKER_METRICS_PORT` or `KILN_METRICS_PORT`,
 * and `"kernelTier"`, the CPU kernel tier: ADR 0022, `--kernel-tier` / `KILN_KERNEL_TIER`).
 * Traces go over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 */
import { randomUUID } from "node:crypto";
import { availableParallelism, hostname } from "node:os";
import { basename } from "node:path";
import { credentials, Metadata, Server, ServerCredentials } from "@grpc/grpc-js";
import {
  createCpuBackend,
  createSelectedBackend,
  GrammarHosts,
  loadGrammarVocab,
  setNativeHugePages,
} from "@kiln/kernels";
import { loadConfig, resolveModelDir } from "@kiln/model";
import {
  createGrpcHealthServer,
  GrpcHealthService,
  RouterClient,
  WORKER_LINK_OPTIONS,
  WorkerService,
} from "@kiln/proto";
import {
  createMetricsRegistry,
  startMetricsServer,
  startTracing,
  takeMetricsPortOption,
} from "@kiln/telemetry";
import { WorkerDrain } from "./drain";
import { checkKernelTier, registerKernelTierGauge, takeKernelTierFlags } from "./kernel-tier";
import { applyOmpSpinCount, parseWorkerOptions, type WorkerOptions } from "./options";
import { WorkerTelemetry } from "./telemetry/worker-telemetry";
import { numBlocksPerRank, withGroupHealth } from "./tensor-parallel";
import { createWorkerService } from "./worker-service";

const REGISTER_INTERVAL_MS = 1000;

async function main(): Promise<void> {
  const tracing = await startTracing({ serviceName: "kiln-worker" });
  const { metricsPort, argv } = takeMetricsPortOption(
    process.argv.slice(2),
    process.env,
    "KILN_WORKER_METRICS_PORT",
  );
  const opts = parseWorkerOptions(takeKernelTierFlags(argv, process.env), process.env);
  applyOmpSpinCount(opts);
  // Process-wide: the backend's thread packs its weights with the same addon (on by default).
  if (!opts.hugePages) setNativeHugePages(false);
  const modelDir = await resolveModelDir(opts.model);
  const config = await loadConfig(modelDir);
  const cpuNumBlocks = numBlocksPerRank(config, opts);
  if (cpuNumBlocks < 1) throw new Error("--kv-cache-memory is too small for one KV block");
  const isTensorParallel = opts.tensorParallelSize > 1;
  // LoRA is not supported on tensor-parallel groups (ADR 0018): no slots are offered.
  const maxLoras = isTensorParallel ? 0 : opts.maxLoras;
  const tensorParallel = isTensorParallel
    ? {
        groupId: opts.tpGroup,
        rank: opts.tpRank,
        size: opts.tensorParallelSize,
        timeoutMs: opts.tpTimeoutMs,
        ...(opts.tpPeers ? { tcpPeers: opts.tpPeers } : {}),
      }
    : undefined;
  const backendOptions = {
    modelDir,
    blockSize: opts.blockSize,
    numThreads: opts.numThreads,
    maxLoras,
    maxLoraRank: opts.maxLoraRank,
    maxCpuLoras: isTensorParallel ? 0 : opts.maxCpuLoras,
    ...(opts.sampling ? { sampling: opts.sampling } : {}),
    weightDtype: opts.weightDtype,
    activationDtype: opts.activationDtype,
    kvCacheDtype: opts.kvCacheDtype,
    ...(tensorParallel ? { tensorParallel } : {}),
  };
  // KILN_BACKEND=webgpu|auto (ADR 0019): webgpu fails here with Dawn's reason when no adapter is
  // usable. Tensor-parallel groups run on the CPU backend only.
  const selected =
    opts.backend === "cpu" || isTensorParallel
      ? null
      : await createSelectedBackend({
          ...backendOptions,
          kind: opts.backend,
          kvCacheBytes: opts.isKvCacheMemorySet ? opts.kvCacheBytes : null,
          webgpuKvFraction: opts.webgpuKvFraction,
          dawnBackend: opts.dawnBackend,
        });
  const created =
    selected?.backend ?? (await createCpuBackend({ ...backendOptions, numBlocks: cpuNumBlocks }));
  const numBlocks = created.info.numBlocks;
  const isShmLeader = isTensorParallel && opts.tpRank === 0 && opts.tpPeers === null;
  const backend = isShmLeader ? withGroupHealth(created, opts.tpGroup) : created;
  const kernelTier =
    backend.info.name === "cpu" ? (backend.info.kernelTier ?? "typescript") : backend.info.name;
  try {
    if (backend.info.name === "cpu") checkKernelTier(kernelTier, process.env);
  } catch (err) {
    await backend.dispose();
    throw err;
  }
  // A TCP ring is not re-formed in place: a rank whose ring broke exits, and its restart (the
  // supervisor, Kubernetes) connects a fresh ring with the other restarted ranks (ADR 0018).
  if (isTensorParallel && opts.tpPeers !== null) exitWhenDead(backend);

  // Structured output (ADR 0016): grammar threads holding the vocabulary as XGrammar sees it,
  // compiled grammars (cached) and the sequences' matchers. Only rank 0 samples (ADR 0018).
  const grammarHosts =
    opts.tpRank > 0
      ? null
      : await GrammarHosts.create(
          await loadGrammarVocab(modelDir, backend.info.vocabSize, config.eosTokenIds),
          {
            maxWhitespace: opts.grammarMaxWhitespace,
            cacheSize: opts.grammarCacheSize,
            maxThreads: opts.grammarThreads,
          },
        );

  const server = new Server(WORKER_LINK_OPTIONS);
  let registerTimer: NodeJS.Timeout | undefined;
  const registry = createMetricsRegistry();
  const telemetry = new WorkerTelemetry(registry, {
    model: basename(modelDir),
    replica: opts.replicaId,
  });
  registerKernelTierGauge(registry, kernelTier);
  const metrics =
    metricsPort === null
      ? null
      : await startMetricsServer(registry, { host: opts.host, port: metricsPort });
  let isShuttingDown = false;
  const shutdown = () => {
    if (isShuttingDown) return;
    isShuttingDown = true;
    clearInterval(registerTimer);
    void metrics?.close();
    server.tryShutdown(() => {
      void Promise.all([backend.dispose(), grammarHosts?.dispose(), tracing.shutdown()]).finally(
        () => process.exit(0),
      );
    });
  };
  const instanceId = randomUUID();
  const service = createWorkerService(
    backend,
    {
      workerId: `${hostname()}:${process.pid}`,
      instanceId,
      model: basename(modelDir),
      eosTokenIds: config.eosTokenIds,
      maxLoras,
      tpSize: opts.tensorParallelSize,
      numComputeThreads: computeThreadsOf(backend.info.name, opts),
    },
    shutdown,
    telemetry,
    opts.maxStepMs,
    grammarHosts,
  );
  const drain = new WorkerDrain(opts.drainTimeoutMs, shutdown);
  server.addService(WorkerService, drain.wrap(service));
  // grpc.health.v1 for Kubernetes' gRPC probes: the model is loaded before the port opens; after
  // that the answer is the Worker service's own Health (what the router probes), until shutdown.
  server.addService(
    GrpcHealthService,
    createGrpcHealthServer(["kiln.v1.Worker"], () => !isShuttingDown && isWorkerServing(service)),
  );
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host}:${opts.port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  // SIGTERM (Kubernetes, a rolling update): drain; the router releases this worker once its
  // requests are done, calling Shutdown. SIGINT (the supervisor stopping the whole cluster after
  // the gateway drained), a second SIGTERM, or a worker with no router: stop at once.
  const onTerm = () => {
    if (drain.isDraining || !opts.routerAddress || opts.tpRank > 0) return shutdown();
    process.stderr.write("kiln worker: draining: finishing running sequences\n");
    drain.start(() => clearInterval(registerTimer));
  };
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", shutdown);
  const listening = {
    event: "listening",
    port,
    numBlocks,
    metricsPort: metrics?.port,
    kernelTier,
    backend: backend.info.name,
    adapter: selected?.adapter ?? undefined,
    autoBackend: selected?.autoReason ?? undefined,
  };
  process.stdout.write(`${JSON.stringify(listening)}\n`);
  // Ranks > 0 of a tensor-parallel group take their steps from rank 0, never from the router.
  if (opts.routerAddress && opts.tpRank === 0) {
    registerTimer = keepRegistered(opts, port, instanceId);
  }
}

function exitWhenDead(backend: { deadReason?(): string | null }): void {
  setInterval(() => {
    const reason = backend.deadReason?.();
    if (reason == null) return;
    process.stderr.write(`kiln worker: tensor-parallel ring lost (${reason}); exiting\n`);
    process.exit(1);
  }, 200).unref();
}

/** Asks the Worker service's Health handler in process, as the router does over gRPC. */
/**
 * CPU threads the backend computes on, every rank of the group together (each rank runs
 * --threads, or the OpenMP default of one per core); 0 on a GPU.
 */
function computeThreadsOf(
  backendName: string,
  opts: { readonly numThreads: number | undefined; readonly tensorParallelSize: number },
): number {
  if (backendName === "webgpu") return 0;
  return (opts.numThreads ?? availableParallelism()) * opts.tensorParallelSize;
}

function isWorkerServing(service: ReturnType<typeof createWorkerService>): Promise<boolean> {
  return new Promise((resolve) => {
    const call = { request: {} } as Parameters<typeof service.health>[0];
    service.health(call, (err, res) => resolve(!err && res?.serving === true));
  });
}

/**
 * Announces this worker to the router now and every second: registration is idempotent, and
 * repeating it lets a restarted router find its workers again.
 */
function keepRegistered(opts: WorkerOptions, port: number, instanceId: string): NodeJS.Timeout {
  const client = new RouterClient(opts.routerAddress!, credentials.createInsecure());
  const request = {
    address: `${opts.advertiseHost}:${port}`,
    replicaId: opts.replicaId,
    instanceId,
    role: opts.role === "draft" ? "draft" : "",
  };
  const register = () => {
    client.registerWorker(
      request,
      new Metadata(),
      { deadline: Date.now() + REGISTER_INTERVAL_MS },
      () => {},
    );
  };
  register();
  return setInterval(register, REGISTER_INTERVAL_MS);
}

main().catch((err: unknown) => {
  process.stderr.write(`kiln worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
