import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, hasBinary } from "@kiln/test-support";

/** True when the `prometheus` binary (Debian package `prometheus`) is on PATH. */
export function hasPrometheus(): boolean {
  return hasBinary("prometheus", ["--version"]);
}

export interface PrometheusTargets {
  readonly gateway: string;
  readonly router: string;
  readonly worker: string;
}

/** A Prometheus server started for a test, with its own storage in a temporary directory. */
export interface TestPrometheus {
  readonly url: string;
  /** Runs an instant query; throws on a parse or evaluation error. */
  query(expr: string): Promise<unknown[]>;
  /** The rules Prometheus loaded, with their last evaluation's health. */
  rules(): Promise<{ name: string; query: string; health: string; lastError?: string }[]>;
  stop(): Promise<void>;
}

/**
 * Starts Prometheus with deploy/prometheus's config and rules, the static targets replaced by
 * the test's processes and the scrape and evaluation intervals shortened to one second.
 */
export async function startPrometheus(
  deployDir: string,
  targets: PrometheusTargets,
): Promise<TestPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-prometheus-"));
  const config = (await readFile(join(deployDir, "prometheus.yml"), "utf8"))
    .replaceAll("127.0.0.1:8000", targets.gateway)
    .replaceAll("127.0.0.1:9401", targets.router)
    .replaceAll("127.0.0.1:9402", targets.worker)
    .replace(/scrape_interval: \S+/, "scrape_interval: 1s")
    .replace(/evaluation_interval: \S+/, "evaluation_interval: 1s");
  await writeFile(join(dir, "prometheus.yml"), config);
  await writeFile(join(dir, "kiln-alerts.yml"), await readFile(join(deployDir, "kiln-alerts.yml")));
  const port = await freePort();
  const child: ChildProcess = spawn(
    "prometheus",
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  while (
    !(await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const api = async (path: string) => {
    const body = (await (await fetch(`${url}/api/v1/${path}`)).json()) as {
      status: string;
      error?: string;
      data: unknown;
    };
    if (body.status !== "success") throw new Error(`${path}: ${body.error}`);
    return body.data;
  };
  return {
    url,
    query: async (expr) =>
      ((await api(`query?query=${encodeURIComponent(expr)}`)) as { result: unknown[] }).result,
    rules: async () =>
      ((await api("rules")) as { groups: { rules: never[] }[] }).groups.flatMap((g) => g.rules),
    stop,
  };
}
