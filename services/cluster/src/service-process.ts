import { Child } from "./child";

/** A Kiln service (or any TypeScript entry point) running as a real child process. */
export interface ServiceProcess {
  readonly name: string;
  /** The port from its `{"event":"listening","port":N}` line. */
  readonly port: number;
  readonly pid: number | undefined;
  /** Every JSON line it has printed on stdout so far (status lines, profiles). */
  readonly jsonLines: readonly Record<string, unknown>[];
  /** SIGKILL at once, as a crash would; resolves once it has exited. */
  kill(): Promise<void>;
  /**
   * SIGINT (a worker stops at once; SIGTERM would make it drain), then SIGKILL after 5 s;
   * resolves once it has exited.
   */
  stop(): Promise<void>;
}

export interface ServiceProcessOptions {
  readonly args?: readonly string[];
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

const STOP_GRACE_MS = 5000;
const LOG_TAIL_LINES = 40;

/**
 * Starts `script` under tsx and resolves once it reports `listening`. Rejects, after killing it,
 * when it exits first or takes longer than `timeoutMs`; the error carries its last log lines.
 * Used by tests and benchmarks that need the services as real processes; the supervisor uses
 * `Child` directly.
 */
export async function startServiceProcess(
  name: string,
  script: string,
  opts: ServiceProcessOptions,
): Promise<ServiceProcess> {
  const logTail: string[] = [];
  const jsonLines: Record<string, unknown>[] = [];
  const child = new Child(
    {
      name,
      command: process.execPath,
      args: ["--import", "tsx", script, ...(opts.args ?? [])],
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      onJson: (message) => jsonLines.push(message),
    },
    (line) => {
      logTail.push(line);
      if (logTail.length > LOG_TAIL_LINES) logTail.shift();
    },
  );
  let port: number;
  try {
    const listening = await child.waitForEvent("listening", opts.timeoutMs ?? 120_000);
    port = Number(listening["port"]);
  } catch (err) {
    await child.stop("SIGKILL", 0);
    throw new Error(`${(err as Error).message}\n${logTail.join("\n")}`);
  }
  return {
    name,
    port,
    pid: child.pid,
    jsonLines,
    kill: async () => {
      await child.stop("SIGKILL", 0);
    },
    stop: async () => {
      await child.stop("SIGINT", STOP_GRACE_MS);
    },
  };
}
