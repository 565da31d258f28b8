import { setTimeout as sleep } from "node:timers/promises";
import { Child, type ChildSpec, describeExit } from "./child";
import { serviceEntryArgs } from "./service-entry";

export interface ClusterOptions {
  /** Repository root: children run `services/<name>/src/main.ts` (or `dist/main.js`) from here. */
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
  readonly env: NodeJS.ProcessEnv;
  /** Where the supervisor's and children's log lines go. */
  readonly log: (line: string) => void;
}

export interface RunningCluster {
  readonly gatewayPort: number;
  readonly pids: Readonly<Record<string, number | undefined>>;
  /** Resolves with the exit code once everything stopped: 0 after `stop`, 1 after a crash. */
  readonly stopped: Promise<number>;
  /** Drains the gateway, then stops the worker and router. Idempotent. */
  stop(reason: string): Promise<number>;
}

const STOP_GRACE_MS = 5000;
const HEALTH_POLL_MS = 200;

/**
 * Starts router, worker and gateway as separate processes, in that order, each once the one it
 * needs is listening, and resolves when the gateway reports healthy. If any child exits on its
 * own, the supervisor stops the others (no restarts) and `stopped` resolves with 1. Throws
 * (after stopping whatever started) when a process fails to come up.
 */
export async function startCluster(opts: ClusterOptions): Promise<RunningCluster> {
  const children: Child[] = [];
  const spawnChild = (name: string, args: string[]) => {
    const spec: ChildSpec = {
      name,
      command: process.execPath,
      args: [...serviceEntryArgs(name), ...args],
      cwd: opts.repoRoot,
      env: opts.env,
    };
    const child = new Child(spec, opts.log);
    children.push(child);
    return child;
  };
  const stopAll = createStopper(children, opts);
  try {
    const gatewayPort = await startInOrder(opts, spawnChild);
    await waitHealthy(opts, gatewayPort, children);
    let exitCode = 0;
    for (const child of children) {
      void child.exited.then((exit) => {
        if (stopAll.isStopping) return;
        opts.log(`kiln: ${child.spec.name} exited unexpectedly (${describeExit(exit)}); stopping`);
        exitCode = 1;
        void stopAll.stop();
      });
    }
    const pids = Object.fromEntries(children.map((c) => [c.spec.name, c.pid]));
    return {
      gatewayPort,
      pids,
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
  spawnChild: (name: string, args: string[]) => Child,
): Promise<number> {
  const router = spawnChild("router", [
    ...["--host", "127.0.0.1", "--port", String(opts.routerPort)],
    ...metricsPortArgs(opts.env, "KILN_ROUTER_METRICS_PORT"),
  ]);
  const routerListening = await router.waitForEvent("listening", opts.startTimeoutMs);
  const routerAddress = `127.0.0.1:${Number(routerListening.port)}`;
  const worker = spawnChild("worker", [
    ...["--model", opts.modelDir, "--router", routerAddress],
    ...metricsPortArgs(opts.env, "KILN_WORKER_METRICS_PORT"),
  ]);
  const workerListening = await worker.waitForEvent("listening", opts.startTimeoutMs);
  const gateway = spawnChild("gateway", [
    ...["--model", opts.modelDir, "--served-model-name", opts.servedName],
    ...["--router", routerAddress, "--host", opts.host, "--port", String(opts.port)],
    ...["--drain-timeout", String(opts.drainTimeoutS)],
    ...metricsUpstreamArgs([routerListening, workerListening]),
  ]);
  return Number((await gateway.waitForEvent("listening", opts.startTimeoutMs)).port);
}

/**
 * Router and worker serve `/metrics` on a port of their own so the gateway can relay their
 * `kiln_*` series (one scrape for a laptop): any free port, unless the environment names one.
 */
function metricsPortArgs(env: NodeJS.ProcessEnv, serviceEnvName: string): string[] {
  return env[serviceEnvName] || env.KILN_METRICS_PORT ? [] : ["--metrics-port", "0"];
}

/** `--metrics-upstream` for every child that reported a `metricsPort` when it started listening. */
function metricsUpstreamArgs(listening: readonly Record<string, unknown>[]): string[] {
  return listening
    .filter((event) => typeof event.metricsPort === "number")
    .flatMap((event) => ["--metrics-upstream", `http://127.0.0.1:${event.metricsPort}/metrics`]);
}

/** Polls the gateway's /health until the router reports a healthy worker group. */
async function waitHealthy(opts: ClusterOptions, port: number, children: readonly Child[]) {
  const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/health`;
  const deadline = Date.now() + opts.startTimeoutMs;
  while (Date.now() < deadline) {
    const dead = children.find((c) => c.hasExited);
    if (dead) throw new Error(`${dead.spec.name} exited while the cluster was starting`);
    const isOk = await fetch(url).then(
      (res) => res.ok,
      () => false,
    );
    if (isOk) return;
    await sleep(HEALTH_POLL_MS);
  }
  throw new Error(`the cluster did not become healthy in ${opts.startTimeoutMs} ms`);
}

/** Gateway first (it drains), then worker and router together. */
function createStopper(children: readonly Child[], opts: ClusterOptions) {
  let stopping: Promise<void> | null = null;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  const byName = (name: string) => children.filter((c) => c.spec.name === name);
  return {
    get isStopping() {
      return stopping !== null;
    },
    done,
    stop(): Promise<void> {
      stopping ??= (async () => {
        const drainMs = opts.drainTimeoutS * 1000 + STOP_GRACE_MS;
        await Promise.all(byName("gateway").map((c) => c.stop("SIGTERM", drainMs)));
        const rest = children.filter((c) => c.spec.name !== "gateway");
        await Promise.all(rest.map((c) => c.stop("SIGTERM", STOP_GRACE_MS)));
        resolveDone();
      })();
      return stopping;
    },
  };
}
