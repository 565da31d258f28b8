import { join } from "node:path";
import { REPO_ROOT, STORIES_DIR } from "@kiln/test-support";
import OpenAI from "openai";
import { Child } from "../src/child";

/** The real `npm start` supervisor (services/cluster/src/main.ts) as a child process. */
export interface SupervisorProcess {
  readonly child: Child;
  readonly baseURL: string;
  readonly gatewayPort: number;
  readonly metricsPort: number;
  readonly client: OpenAI;
  /** Current pid of router, worker and gateway (updated by `restarted` lines). */
  readonly pids: Record<string, number>;
  /** Every `restarted` line so far. */
  readonly restarts: { service: string; pid: number; cause: string }[];
  readonly logs: string[];
  /** Text of the supervisor's /metrics. */
  metrics(): Promise<string>;
  /** SIGTERM (drain), then SIGKILL of every known pid after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts the supervisor on ephemeral ports with `env` on top of the test's environment and
 * resolves once it prints `ready`. The last 200 log lines are kept for failure messages.
 */
export async function startSupervisor(env: NodeJS.ProcessEnv): Promise<SupervisorProcess> {
  const logs: string[] = [];
  const restarts: SupervisorProcess["restarts"] = [];
  const pids: Record<string, number> = {};
  const child = new Child(
    {
      name: "supervisor",
      command: process.execPath,
      args: ["--import", "tsx", join(REPO_ROOT, "services/cluster/src/main.ts")],
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        KILN_MODEL: STORIES_DIR,
        PORT: "0",
        KILN_ROUTER_PORT: "0",
        KILN_SUPERVISOR_METRICS_PORT: "0",
        KILN_KV_CACHE_MEMORY: "64MiB",
        KILN_DRAIN_TIMEOUT_S: "5",
        ...env,
      },
      onJson: (m) => {
        if (m.event === "restarted") {
          const r = { service: String(m.service), pid: Number(m.pid), cause: String(m.cause) };
          restarts.push(r);
          pids[r.service] = r.pid;
        }
      },
    },
    (line) => {
      logs.push(line);
      if (logs.length > 200) logs.shift();
    },
  );
  let ready: Record<string, unknown>;
  try {
    ready = await child.waitForEvent("ready", 120_000);
  } catch (err) {
    await child.stop("SIGTERM", 10_000);
    throw new Error(`${(err as Error).message}\n${logs.join("\n")}`);
  }
  Object.assign(pids, ready.pids as Record<string, number>);
  const gatewayPort = Number(ready.port);
  const metricsPort = Number(ready.metricsPort);
  const baseURL = `http://127.0.0.1:${gatewayPort}/v1`;
  return {
    child,
    baseURL,
    gatewayPort,
    metricsPort,
    client: new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 20_000 }),
    pids,
    restarts,
    logs,
    metrics: () => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()),
    stop: async (graceMs = 15_000) => {
      await child.stop("SIGTERM", graceMs);
      for (const pid of Object.values(pids)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already stopped by the supervisor.
        }
      }
    },
  };
}
