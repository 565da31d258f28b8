/**
 * The worker process: loads the model named by KILN_MODEL into a compute backend, serves the
 * Worker gRPC service, and registers with the router when one is configured. Prints one JSON
 * line `{"event":"listening","port":N}` on stdout once it accepts calls (with `"metricsPort":M`
 * when `/metrics` is served: `--metrics-port`, `KILN_WORKER_METRICS_PORT` or `KILN_METRICS_PORT`).
 * Traces go over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { basename } from "node:path";
import { credentials, Metadata, Server, ServerCredentials } from "@grpc/grpc-js";
import { createSelectedBackend } from "@kiln/kernels";
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
import { parseWorkerOptions, type WorkerOptions } from "./options";
import { WorkerTelemetry } from "./telemetry/worker-telemetry";
import { createWorkerService } from "./worker-service";

const REGISTER_INTERVAL_MS = 1000;

async function main(): Promise<void> {
  const tracing = await startTracing({ serviceName: "kiln-worker" });
  const { metricsPort, argv } = takeMetricsPortOption(
    process.argv.slice(2),
    process.env,
    "KILN_WORKER_METRICS_PORT",
  );
  const opts = parseWorkerOptions(argv, process.env);
  const modelDir = await resolveModelDir(opts.model);
  const config = await loadConfig(modelDir);
  // KILN_BACKEND=webgpu fails here with Dawn's reason when no adapter is usable (ADR 0019).
  const selected = await createSelectedBackend({
    kind: opts.backend,
    kvCacheBytes: opts.isKvCacheMemorySet ? opts.kvCacheBytes : null,
    webgpuKvFraction: opts.webgpuKvFraction,
    dawnBackend: opts.dawnBackend,
    modelDir,
    blockSize: opts.blockSize,
    numThreads: opts.numThreads,
    maxLoras: opts.maxLoras,
    maxLoraRank: opts.maxLoraRank,
    maxCpuLoras: opts.maxCpuLoras,
  });
  const { backend } = selected;
  const numBlocks = backend.info.numBlocks;

  const server = new Server(WORKER_LINK_OPTIONS);
  let registerTimer: NodeJS.Timeout | undefined;
  const registry = createMetricsRegistry();
  const telemetry = new WorkerTelemetry(registry, {
    model: basename(modelDir),
    replica: opts.replicaId,
  });
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
      void Promise.all([backend.dispose(), tracing.shutdown()]).finally(() => process.exit(0));
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
      maxLoras: opts.maxLoras,
    },
    shutdown,
    telemetry,
    opts.maxStepMs,
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
    if (drain.isDraining || !opts.routerAddress) return shutdown();
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
    backend: backend.info.name,
    adapter: selected.adapter ?? undefined,
    autoBackend: selected.autoReason ?? undefined,
  };
  process.stdout.write(`${JSON.stringify(listening)}\n`);
  if (opts.routerAddress) registerTimer = keepRegistered(opts, port, instanceId);
}

/** Asks the Worker service's Health handler in process, as the router does over gRPC. */
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
