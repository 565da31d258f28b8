import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

/** How a child process ended. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ChildSpec {
  /** Prefix of its log lines ("router", "worker", "gateway"). */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Receives every JSON object line the child prints on stdout (status lines, profiles). */
  readonly onJson?: (message: Record<string, unknown>) => void;
}

/**
 * One supervised process. Its stdout and stderr lines are written to `log` prefixed with its
 * name; JSON lines on stdout are also offered to `waitForEvent`. The child runs in its own
 * process group, so a terminal's Ctrl-C reaches only the supervisor, which decides the order
 * in which children stop.
 */
export class Child {
  readonly exited: Promise<ChildExit>;
  private readonly proc: ChildProcess;
  private readonly eventWaiters: {
    event: string;
    resolve: (e: Record<string, unknown>) => void;
  }[] = [];
  private exit: ChildExit | null = null;

  constructor(
    readonly spec: ChildSpec,
    private readonly log: (line: string) => void,
  ) {
    this.proc = spawn(spec.command, [...spec.args], {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      // A spawn failure (no such command) never emits 'exit'.
      this.proc.once("error", (err) => {
        this.log(`[${spec.name}] ${err.message}`);
        this.exit = { code: 127, signal: null };
        resolve(this.exit);
      });
    });
    createInterface({ input: this.proc.stdout! }).on("line", (line) => this.onStdout(line));
    createInterface({ input: this.proc.stderr! }).on("line", (line) =>
      this.log(`[${spec.name}] ${line}`),
    );
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get hasExited(): boolean {
    return this.exit !== null;
  }

  /**
   * Resolves with the first stdout JSON line whose `event` is `event`. Rejects when the child
   * exits first or `timeoutMs` passes.
   */
  async waitForEvent(event: string, timeoutMs: number): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    const found = new Promise<Record<string, unknown>>((resolve) => {
      this.eventWaiters.push({ event, resolve });
    });
    const failed = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.spec.name} did not report "${event}" in ${timeoutMs} ms`)),
        timeoutMs,
      );
      void this.exited.then((e) =>
        reject(new Error(`${this.spec.name} exited before "${event}" (${describeExit(e)})`)),
      );
    });
    try {
      return await Promise.race([found, failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal`, then SIGKILL (to its whole process group) after `graceMs`. */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<ChildExit> {
    if (this.exit) return this.exit;
    this.signal(signal);
    const timer = setTimeout(() => {
      this.log(`[${this.spec.name}] did not stop in ${graceMs} ms: killing it`);
      this.signal("SIGKILL", true);
    }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  private signal(signal: NodeJS.Signals, isGroup = false): void {
    const pid = this.proc.pid;
    if (pid === undefined || this.exit) return;
    try {
      process.kill(isGroup ? -pid : pid, signal);
    } catch {
      // Already gone: 'exit' is on its way.
    }
  }

  private onStdout(line: string): void {
    this.log(`[${this.spec.name}] ${line}`);
    if (!line.startsWith("{")) return;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    this.spec.onJson?.(parsed);
    for (const waiter of this.eventWaiters.filter((w) => w.event === parsed["event"])) {
      waiter.resolve(parsed);
    }
  }
}

export function describeExit(e: ChildExit): string {
  return e.signal ? `signal ${e.signal}` : `code ${e.code}`;
}
