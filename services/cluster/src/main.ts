/**
 * `npm start`: runs router, one worker and the gateway as separate processes and serves the
 * model named by KILN_MODEL (default: ../shared/models/stories260K beside the repository).
 * KILN_TENSOR_PARALLEL_SIZE / --tensor-parallel-size and KILN_DATA_PARALLEL_SIZE /
 * --data-parallel-size run D replicas of T worker processes each instead (ADR 0018).
 * Prints `{"event":"ready","port":N,...}` on stdout once the gateway answers healthy; logs go to
 * stderr, each child's lines prefixed with its name. Ctrl-C (SIGINT) or SIGTERM drains the
 * gateway (KILN_DRAIN_TIMEOUT_S, default 30 s), then stops every process; a second Ctrl-C
 * kills them. A child that exits on its own is restarted with exponential backoff (one stdout
 * line `{"event":"restarted","service":S,"pid":P,"cause":C}` each time); after more than
 * KILN_SUPERVISOR_MAX_RESTARTS crashes of one service within KILN_SUPERVISOR_RESTART_WINDOW_S
 * the supervisor stops everything and exits 1 with the reason (see supervisor-options.ts for
 * every flag; `kiln_supervisor_restarts_total` on KILN_SUPERVISOR_METRICS_PORT).
 */
import { join, resolve } from "node:path";
import { resolveModelDir } from "@kiln/model";
import { createMetricsRegistry, SupervisorMetrics, startMetricsServer } from "@kiln/telemetry";
import { startCluster } from "./cluster";
import { resolveDraftModelDir } from "./draft-model";
import { NO_MODEL_MESSAGE, tryResolveModelSpec } from "./model-spec";
import { hasRedisServer, startRedis } from "./redis";
import { parseSupervisorOptions } from "./supervisor-options";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
const DUPLICATE_SIGNAL_MS = 1000;
const DEFAULT_MODEL_DIR = join(REPO_ROOT, "../shared/models/stories260K");

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function intEnv(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: expected an integer ≥ 0`);
  return n;
}

async function main(): Promise<number> {
  const env = process.env;
  const supervisor = parseSupervisorOptions(process.argv.slice(2), env);
  const spec = tryResolveModelSpec(
    env.KILN_MODEL,
    env.INIT_CWD ?? process.cwd(),
    DEFAULT_MODEL_DIR,
  );
  if (!spec) {
    const why = env.KILN_MODEL
      ? `KILN_MODEL="${env.KILN_MODEL}" is neither a directory nor a Hub repo id (owner/name)`
      : `KILN_MODEL is not set and ${DEFAULT_MODEL_DIR} does not exist`;
    log(`kiln: ${why}: ${NO_MODEL_MESSAGE}`);
    return 2;
  }
  const modelDir =
    "dir" in spec.source ? spec.source.dir : await resolveModelDir(spec.source.repoId);
  log(`kiln: serving ${spec.servedName} from ${modelDir}`);
  const draftModelDir = await resolveDraftModelDir(env, env.INIT_CWD ?? process.cwd(), modelDir);
  if (draftModelDir) log(`kiln: speculative decoding drafts with ${draftModelDir}`);
  const registry = createMetricsRegistry({ processMetrics: false });
  const metrics = new SupervisorMetrics(registry, ["router", "worker", "gateway"]);
  const metricsServer =
    supervisor.metricsPort === null
      ? null
      : await startMetricsServer(registry, { host: "127.0.0.1", port: supervisor.metricsPort });
  const dataDir = resolve(env.INIT_CWD ?? process.cwd(), env.KILN_DATA_DIR || ".kiln-data");
  const redis = await maybeStartRedis(env, dataDir);
  const childEnv = {
    ...env,
    KILN_DATA_DIR: dataDir,
    ...(redis ? { KILN_REDIS_URL: redis.url } : {}),
  };
  const cluster = await startCluster({
    repoRoot: REPO_ROOT,
    modelDir,
    servedName: spec.servedName,
    host: env.HOST ?? "127.0.0.1",
    port: intEnv("PORT", 8000),
    routerPort: intEnv("KILN_ROUTER_PORT", 0),
    drainTimeoutS: intEnv("KILN_DRAIN_TIMEOUT_S", 30),
    startTimeoutMs: intEnv("KILN_START_TIMEOUT_S", 300) * 1000,
    restartPolicy: supervisor.restartPolicy,
    workerGroups: {
      tensorParallelSize: supervisor.tensorParallelSize,
      dataParallelSize: supervisor.dataParallelSize,
    },
    draftModelDir,
    env: childEnv,
    log,
    hooks: {
      onRestarting: (service, cause) => metrics.restarted(service, cause),
      onUp: (service, isUp) => metrics.setUp(service, isUp),
      onRestarted: (service, pid, cause) => {
        const line = { event: "restarted", service, pid, cause };
        process.stdout.write(`${JSON.stringify(line)}\n`);
      },
    },
  }).catch(async (err: unknown) => {
    await redis?.stop();
    throw err;
  });
  const host = env.HOST ?? "127.0.0.1";
  log(`kiln: ready at http://${host}:${cluster.gatewayPort}/v1 (model "${spec.servedName}")`);
  const ready = {
    event: "ready",
    port: cluster.gatewayPort,
    model: spec.servedName,
    pids: cluster.pids,
    metricsPort: metricsServer?.port,
  };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  let firstSignalAt: number | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === null) {
      firstSignalAt = Date.now();
      log("kiln: press Ctrl-C again to stop at once");
      void cluster.stop(signal);
      return;
    }
    // A terminal's Ctrl-C reaches npm, its shell and us at once, and npm relays it again:
    // copies that arrive right after the first are the same keypress.
    if (Date.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return;
    log("kiln: second signal: killing every process");
    for (const pid of Object.values(cluster.pids)) if (pid) killGroup(pid);
    if (redis?.child.pid) killGroup(redis.child.pid);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const code = await cluster.stopped;
  await redis?.stop(); // after the gateway, so its last answers reach the AOF
  await metricsServer?.close();
  return code;
}

/**
 * Without KILN_REDIS_URL, runs redis-server from PATH (AOF under `<dataDir>/redis`) for the
 * Batch and Files APIs; without either, those APIs answer 503 and the rest works.
 */
async function maybeStartRedis(env: NodeJS.ProcessEnv, dataDir: string) {
  if (env.KILN_REDIS_URL) return null;
  if (!hasRedisServer()) {
    log("kiln: no KILN_REDIS_URL and no redis-server on PATH: the Batch and Files APIs are off");
    return null;
  }
  const redis = await startRedis(dataDir, log, intEnv("KILN_REDIS_PORT", 0));
  log(`kiln: started redis-server at ${redis.url} (AOF in ${dataDir}/redis)`);
  return redis;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(`kiln: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
