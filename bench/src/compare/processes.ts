import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** A TypeScript entry point running as a real child process, with the port it reported. */
export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  /** Every JSON line the process printed on stdout (status lines, profiles). */
  readonly jsonLines: readonly Record<string, unknown>[];
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

/**
 * Starts `script` (relative to the repo root) under tsx and resolves once it prints
 * `{"event":"listening","port":N}`. Rejects, after killing it, if it exits first or takes
 * longer than `timeoutMs`. stderr is kept (last 4 kB) for the error message.
 */
export async function startProcess(
  name: string,
  script: string,
  opts: StartOptions = {},
): Promise<ServiceProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", resolve(REPO_ROOT, script), ...(opts.args ?? [])],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const jsonLines: Record<string, unknown>[] = [];
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
      opts.timeoutMs ?? 120_000,
    );
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return; // not a JSON status line
      }
      jsonLines.push(msg);
      if (msg.event === "listening" && typeof msg.port === "number") {
        clearTimeout(timer);
        resolvePort(msg.port);
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
  return { name, child, port, jsonLines, stop };
}

/** Polls `check` every 100 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
