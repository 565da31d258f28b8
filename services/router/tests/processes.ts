import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const STORIES_DIR = resolve(REPO_ROOT, "../shared/models/stories260K");
export const GOLDEN_PATH = resolve(REPO_ROOT, "../shared/golden/stories260K-greedy.json");

export interface Golden {
  readonly cases: readonly {
    readonly prompt: string;
    readonly prompt_ids: number[];
    readonly greedy_ids: number[];
    readonly greedy_text: string;
  }[];
}

/** A service started as a real child process (through tsx), with the port it reported. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `services/<name>/src/main.ts` with `args` and resolves once it prints its
 * `{"event":"listening"}` line. Rejects (and kills it) when it exits first or takes too long.
 */
export async function startService(
  name: "router" | "worker" | "gateway",
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<ServiceProcess> {
  const script = resolve(REPO_ROOT, `services/${name}/src/main.ts`);
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start: ${stderr}`)),
      timeoutMs,
    );
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { event?: string; port?: number };
        if (msg.event === "listening" && typeof msg.port === "number") {
          clearTimeout(timer);
          resolvePort(msg.port);
        }
      } catch {
        // not a JSON status line
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening: ${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return { child, port, stop };
}

/** Polls `check` every 50 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
