import { setTimeout as sleep } from "node:timers/promises";
import { Child, type ChildSpec } from "./child";
import { DEFAULT_RESTART_POLICY, type RestartPolicy } from "./restart-policy";
import { serviceEntryArgs } from "./service-entry";
import { SupervisedService, type SupervisionHooks } from "./supervised-service";
import { type WorkerGroupLayout, workerProcessSpecs } from "./worker-groups";

export interface ClusterOptions {
  /** Repository root: children run `services/<name>/src/main.ts` from here. */
  readonly repoRoot: string;
  /** Local model directory (already downloaded). */
  readonly modelDir: string;
  readonly servedName: string;
  /** Gateway address; port 0 picks a free one. */
  readonly host: string;
  readonly port: number;
  /** Router's internal port; 0 picks a free one. */
  readonly routerPort: number;
  /** In-flight requests may run this long after a stop is requested. */
  readonly drainTimeoutS: number;
  /** Each process must report "listening" (and the cluster be healthy) within this. */
  readonly startTimeoutMs: number;
  /** How crashed children are restarted, and when the supervisor gives up (default: DEFAULT_RESTART_POLICY). */
  readonly restartPolicy?: RestartPolicy;
  readonly env: NodeJS.ProcessEnv;
  /** Where the supervisor's and children's log lines go. */
  readonly log: (line: string) => void;
  /** Tensor-parallel ranks per group and groups (replicas); 1 × 1 by default (ADR 0018). */
  readonly workerGroups?: WorkerGroupLayout;
  /**
   * Draft-model speculation (ADR 0017): the draft model's directory. Each replica then gets one
   * more worker process, `draft-<replica>`, serving it with `--role draft`.
   */
  readonly draftModelDir?: string | null;
  /** Restart bookkeeping (metrics, the `restarted` stdout line); all optional. */
  readonly hooks?: Partial<Pick<SupervisionHooks, "onRestarting" | "onRestarted" | "onUp">>;
}

export interface RunningCluster {
  readonly gatewayPort: number;
  /** Current pid of each child (a restart changes it). */
  readonly pids: Readonly<Record<string, number | undefined>>;
  /** Resolves with the exit code once everything stopped: 0 after `stop`, 1 after giving up. */
  readonly stopped: Promise<number>;
  /** Drains the gateway, then stops the worker and router. Idempotent. */
  stop(reason: string): Promise<number>;
}

const STOP_GRACE_MS = 5000;
const HEALTH_POLL_MS = 200;

/**
 * Starts router, worker and gateway as separate processes, in that order, each once the one it
 * needs is listening, and resolves when the gateway reports healthy. From then on a child that
 * exits on its own is restarted with exponential backoff (the router and gateway on the ports
 * they had; workers re-register and the gateway's channel reconnects by themselves). After more
 * than `restartPolicy.maxRestarts` crashes of one service within the window the supervisor
 * gives up: it stops the others and `stopped` resolves with 1. Throws (after stopping whatever
 * started) when a process fails to come up the first time.
 */
export async function startCluster(opts: ClusterOptions): Promise<RunningCluster> {
  const services: SupervisedService[] = [];
  let exitCode = 0;
  const stopAll = createStopper(services, opts);
  const hooks: SupervisionHooks = {
    log: opts.log,
    onRestarting: (name, cause) => opts.hooks?.onRestarting?.(name, cause),
    onRestarted: (name, pid, cause) => opts.hooks?.onRestarted?.(name, pid, cause),
    onUp: (name, isUp) => opts.hooks?.onUp?.(name, isUp),
    onGiveUp: (reason) => {
      opts.log(`kiln: ${reason}; stopping`);
      exitCode = 1;
      void stopAll.stop();
    },
  };
  const startService = (name: string, args: () => string[]) => {
    const spawn = () => {
      const spec: ChildSpec = {
        name,
        command: process.execPath,
        // worker-<group>-<rank> and draft-<replica> run the worker service (worker-groups.ts).
        args: [...serviceEntryArgs(name.replace(/^(worker|draft)-.*/, "worker")), ...args()],
        cwd: opts.repoRoot,
        env: opts.env,
      };
      return new Child(spec, opts.log);
    };
    const service = new SupervisedService(
      name,
      spawn,
      opts.restartPolicy ?? DEFAULT_RESTART_POLICY,
      opts.startTimeoutMs,
      hooks,
    );
    services.push(service);
    return service.current;
  };
  try {
    const gatewayPort = await startInOrder(opts, startService);
    await waitHealthy(opts, gatewayPort, services);
    for (const service of services) service.supervise();
    return {
      gatewayPort,
      get pids() {
        return Object.fromEntries(services.map((s) => [s.name, s.current.pid]));
      },
      stopped: stopAll.done.then(() => exitCode),
      stop: async (reason) => {
        opts.log(`kiln: ${reason}: stopping (draining up to ${opts.drainTimeoutS} s)`);
        await stopAll.stop();
        return exitCode;
      },
    };
  } catch (err) {
    await stopAll.stop();
    throw err;
  }
}

async function startInOrder(
  opts: ClusterOptions,
  startService: (name: string, args: () => string[]) => Child,
): Promise<number> {
  let routerPort = opts.routerPort;
  // Restarts reuse the ports of the first start: the gateway dials the same router address and
  // relays the same metrics URLs whichever process instance answers.
  let routerMetricsPort: number | null = metricsPortOf(opts.env, "KILN_ROUTER_METRICS_PORT");
  const router = startService("router", () => [
    ...["--host", "127.0.0.1", "--port", `${routerPort}`],
    ...metricsPortArgs(routerMetricsPort),
  ]);
  const routerListening = await router.waitForEvent("listening", opts.startTimeoutMs);
  routerPort = Number(routerListening.port);
  routerMetricsPort = reportedMetricsPort(routerListening, routerMetricsPort);
  const routerAddress = `127.0.0.1:${routerPort}`;
  const workerMetricsPorts = await startWorkers(opts, startService, routerAddress);
  let gatewayPort = opts.port;
  const gateway = startService("gateway", () => [
    ...["--model", opts.modelDir, "--served-model-name", opts.servedName],
    ...["--router", routerAddress, "--host", opts.host, "--port", String(gatewayPort)],
    ...["--drain-timeout", String(opts.drainTimeoutS)],
    ...metricsUpstreamArgs([routerMetricsPort, ...workerMetricsPorts]),
  ]);
  gatewayPort = Number((await gateway.waitForEvent("listening", opts.startTimeoutMs)).port);
  return gatewayPort;
}

/**
 * Starts every worker process (all ranks of all groups at once: a group's ranks wait for each
 * other) and returns the metrics ports the gateway relays: one per rank-0 worker.
 */
async function startWorkers(
  opts: ClusterOptions,
  startService: (name: string, args: () => string[]) => Child,
  routerAddress: string,
): Promise<(number | null)[]> {
  const layout = opts.workerGroups ?? { tensorParallelSize: 1, dataParallelSize: 1 };
  const specs = workerProcessSpecs(layout, String(process.pid));
  const isSingle = specs.length === 1;
  const started = specs.map((spec) => {
    // A single worker keeps the environment's metrics port; in groups each process takes a
    // free one (ranks > 0 are not relayed: the group's series come from rank 0).
    const port = { value: isSingle ? metricsPortOf(opts.env, "KILN_WORKER_METRICS_PORT") : 0 };
    const child = startService(spec.name, () => [
      ...["--model", opts.modelDir, "--router", routerAddress, ...spec.args],
      ...metricsPortArgs(port.value),
    ]);
    return { spec, child, port };
  });
  const draftModelDir = opts.draftModelDir;
  if (draftModelDir) {
    for (const spec of specs.filter((s) => s.rank === 0)) {
      // Its own free metrics port, not relayed: its series would repeat the target's labels.
      const child = startService(`draft-${spec.replicaId}`, () => [
        ...["--model", draftModelDir, "--router", routerAddress, "--role", "draft"],
        ...["--replica-id", spec.replicaId, "--tensor-parallel-size", "1", "--tp-rank", "0"],
        ...metricsPortArgs(0),
      ]);
      started.push({ spec: { ...spec, rank: -1 }, child, port: { value: 0 } });
    }
  }
  // Wait on every child at once: waitForEvent only sees lines printed after it is called.
  const listening = await Promise.all(
    started.map(({ child }) => child.waitForEvent("listening", opts.startTimeoutMs)),
  );
  const ports: (number | null)[] = [];
  started.forEach(({ spec, port }, i) => {
    port.value = reportedMetricsPort(listening[i]!, port.value);
    if (spec.rank === 0) ports.push(port.value);
  });
  return ports;
}

/**
 * Router and worker serve `/metrics` on a port of their own so the gateway can relay their
 * `kiln_*` series (one scrape for a laptop). Null: the environment names the port
 * (`KILN_<SERVICE>_METRICS_PORT` or `KILN_METRICS_PORT`), which the child reads itself; 0: any
 * free port, fixed after the first start.
 */
function metricsPortOf(env: NodeJS.ProcessEnv, serviceEnvName: string): number | null {
  return env[serviceEnvName] || env.KILN_METRICS_PORT ? null : 0;
}

function metricsPortArgs(port: number | null): string[] {
  return port === null ? [] : ["--metrics-port", String(port)];
}

/** The metrics port a child reported when it started listening (its `metricsPort`), if any. */
function reportedMetricsPort(listening: Record<string, unknown>, fallback: number | null) {
  return typeof listening.metricsPort === "number" ? listening.metricsPort : fallback;
}

/** `--metrics-upstream` for every child with a known metrics port. */
function metricsUpstreamArgs(ports: readonly (number | null)[]): string[] {
  return ports
    .filter((port): port is number => port !== null && port > 0)
    .flatMap((port) => ["--metrics-upstream", `http://127.0.0.1:${port}/metrics`]);
}

/** Polls the gateway's /health until the router reports a healthy worker group. */
async function waitHealthy(
  opts: ClusterOptions,
  port: number,
  services: readonly SupervisedService[],
) {
  const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/health`;
  const deadline = Date.now() + opts.startTimeoutMs;
  while (Date.now() < deadline) {
    const dead = services.find((s) => s.current.hasExited);
    if (dead) throw new Error(`${dead.name} exited while the cluster was starting`);
    const isOk = await fetch(url).then(
      (res) => res.ok,
      () => false,
    );
    if (isOk) return;
    await sleep(HEALTH_POLL_MS);
  }
  throw new Error(`the cluster did not become healthy in ${opts.startTimeoutMs} ms`);
}

/** Gateway first (SIGTERM: it drains), then worker and router together (SIGINT: at once). */
function createStopper(services: readonly SupervisedService[], opts: ClusterOptions) {
  let stopping: Promise<void> | null = null;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  return {
    done,
    stop(): Promise<void> {
      stopping ??= (async () => {
        const drainMs = opts.drainTimeoutS * 1000 + STOP_GRACE_MS;
        const gateways = services.filter((s) => s.name === "gateway");
        await Promise.all(gateways.map((s) => s.stop("SIGTERM", drainMs)));
        // SIGINT, not SIGTERM: a worker drains on SIGTERM, waiting for a router that is
        // stopping too; with the gateway drained there is nothing left to finish.
        const rest = services.filter((s) => s.name !== "gateway");
        await Promise.all(rest.map((s) => s.stop("SIGINT", STOP_GRACE_MS)));
        resolveDone();
      })();
      return stopping;
    },
  };
}
