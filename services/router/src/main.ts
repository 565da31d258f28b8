/**
 * The router process: serves the Router gRPC service, accepts worker registrations, and runs one
 * engine loop per worker group. Prints one JSON line `{"event":"listening","port":N}` on stdout
 * once it accepts calls (with `"metricsPort":M` when `/metrics` is served: `--metrics-port`,
 * `KILN_ROUTER_METRICS_PORT` or `KILN_METRICS_PORT`). Traces go over OTLP when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 */
import { parseArgs } from "node:util";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import {
  DEFAULT_MAX_BATCH_HOLD_STEPS,
  onOffOption,
  parseSpeculationConfig,
} from "@kiln/engine-core";
import {
  createGrpcHealthServer,
  GrpcHealthService,
  ROUTER_LINK_OPTIONS,
  RouterService,
} from "@kiln/proto";
import { startMetricsServer, startTracing, takeMetricsPortOption } from "@kiln/telemetry";
import { probeDrains } from "./drain";
import { DEFAULT_HEALTH_PROBE, HealthProber } from "./health-prober";
import { DEFAULT_MULTI_STEP } from "./multi-step";
import { ReplicaSet } from "./replica-set";
import { createRouterService } from "./router-service";
import { scheduleAheadOption } from "./schedule-ahead";
import { defaultRouterTelemetry } from "./telemetry/router-telemetry";

function intOption(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer`);
  return n;
}

/** --batch-max-hold-steps: a count ≥ 0 (0 turns batch yielding off), 4 by default. */
function batchHoldSteps(value: string | undefined): number {
  if (value === "0") return 0;
  return intOption(value, DEFAULT_MAX_BATCH_HOLD_STEPS, "--batch-max-hold-steps");
}

async function main(): Promise<void> {
  const env = process.env;
  const tracing = await startTracing({ serviceName: "kiln-router" });
  const { metricsPort, argv } = takeMetricsPortOption(
    process.argv.slice(2),
    env,
    "KILN_ROUTER_METRICS_PORT",
  );
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "max-waiting": { type: "string" },
      "max-num-seqs": { type: "string" },
      "max-num-batched-tokens": { type: "string" },
      "step-timeout-ms": { type: "string" },
      "health-probe-interval-ms": { type: "string" },
      "health-probe-timeout-ms": { type: "string" },
      "health-probe-misses": { type: "string" },
      "retry-wait": { type: "string" },
      "batch-max-hold-steps": { type: "string" },
      "async-scheduling": { type: "string" },
      "schedule-ahead": { type: "string" },
      "num-scheduler-steps": { type: "string" },
      "multi-step-max-ms": { type: "string" },
      "speculative-config": { type: "string" },
    },
  });
  // Speculative decoding (ADR 0017): a JSON object like vLLM's --speculative-config.
  const speculation = parseSpeculationConfig(
    values["speculative-config"] ?? env.KILN_SPECULATIVE_CONFIG,
  );
  const host = values.host ?? env.KILN_ROUTER_HOST ?? "127.0.0.1";
  const port = Number(values.port ?? env.KILN_ROUTER_PORT ?? "0");
  const replicas = new ReplicaSet(
    {
      maxNumSeqs: intOption(values["max-num-seqs"] ?? env.KILN_MAX_NUM_SEQS, 64, "--max-num-seqs"),
      maxNumBatchedTokens: intOption(
        values["max-num-batched-tokens"] ?? env.KILN_MAX_NUM_BATCHED_TOKENS,
        512,
        "--max-num-batched-tokens",
      ),
      stepTimeoutMs: intOption(
        values["step-timeout-ms"] ?? env.KILN_STEP_TIMEOUT_MS,
        60_000,
        "--step-timeout-ms",
      ),
      maxBatchHoldSteps: batchHoldSteps(
        values["batch-max-hold-steps"] ?? env.KILN_BATCH_MAX_HOLD_STEPS,
      ),
      isAsyncScheduling: onOffOption(
        values["async-scheduling"] ?? env.KILN_ASYNC_SCHEDULING,
        true,
        "--async-scheduling",
      ),
      scheduleAhead: scheduleAheadOption(
        values["schedule-ahead"] ?? env.KILN_SCHEDULE_AHEAD,
        "--schedule-ahead",
      ),
      multiStep: {
        maxSteps: intOption(
          values["num-scheduler-steps"] ?? env.KILN_NUM_SCHEDULER_STEPS,
          DEFAULT_MULTI_STEP.maxSteps,
          "--num-scheduler-steps",
        ),
        maxBurstMs: intOption(
          values["multi-step-max-ms"] ?? env.KILN_MULTI_STEP_MAX_MS,
          DEFAULT_MULTI_STEP.maxBurstMs,
          "--multi-step-max-ms",
        ),
      },
      speculation,
    },
    () => performance.now(),
  );
  const maxNumWaiting = intOption(
    values["max-waiting"] ?? env.KILN_MAX_WAITING,
    1024,
    "--max-waiting",
  );
  const server = new Server(ROUTER_LINK_OPTIONS);
  // A request whose replica is lost before its first token waits up to this for a retry (0: off).
  const retryWaitText = values["retry-wait"] ?? env.KILN_RETRY_WAIT_S ?? "10";
  const retryWaitS = retryWaitText === "0" ? 0 : intOption(retryWaitText, 10, "--retry-wait");
  const limits = { maxNumWaiting, retryWaitMs: retryWaitS * 1000 };
  server.addService(RouterService, createRouterService(replicas, limits));
  let isShuttingDown = false;
  // grpc.health.v1 for Kubernetes' gRPC probes: SERVING until shutdown begins.
  server.addService(
    GrpcHealthService,
    createGrpcHealthServer(["kiln.v1.Router"], () => !isShuttingDown),
  );
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const telemetry = defaultRouterTelemetry();
  telemetry.trackReplicas(() => replicas.replicas);
  const metrics =
    metricsPort === null
      ? null
      : await startMetricsServer(telemetry.registry, { host, port: metricsPort });
  // Health and drain probes run at the same interval.
  const probeIntervalMs = intOption(
    values["health-probe-interval-ms"] ?? env.KILN_HEALTH_PROBE_INTERVAL_MS,
    DEFAULT_HEALTH_PROBE.intervalMs,
    "--health-probe-interval-ms",
  );
  const prober = new HealthProber(() => replicas.replicas, {
    intervalMs: probeIntervalMs,
    timeoutMs: intOption(
      values["health-probe-timeout-ms"] ?? env.KILN_HEALTH_PROBE_TIMEOUT_MS,
      DEFAULT_HEALTH_PROBE.timeoutMs,
      "--health-probe-timeout-ms",
    ),
    maxMisses: intOption(
      values["health-probe-misses"] ?? env.KILN_HEALTH_PROBE_MISSES,
      DEFAULT_HEALTH_PROBE.maxMisses,
      "--health-probe-misses",
    ),
  });
  prober.start();
  const logDrain = (line: string) => process.stderr.write(`kiln router: ${line}\n`);
  const drainTimer = setInterval(() => void probeDrains(replicas, logDrain), probeIntervalMs);
  const shutdown = () => {
    isShuttingDown = true;
    prober.stop();
    clearInterval(drainTimer);
    replicas.close();
    void metrics?.close();
    server.tryShutdown(() => void tracing.shutdown().finally(() => process.exit(0)));
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  const listening = { event: "listening", port: boundPort, metricsPort: metrics?.port };
  process.stdout.write(`${JSON.stringify(listening)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`kiln router: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
