import { type Child, type ChildExit, describeExit } from "./child";
import { RestartBudget, type RestartPolicy } from "./restart-policy";

/** What a supervised service reports to the supervisor. */
export interface SupervisionHooks {
  readonly log: (line: string) => void;
  /** A restart was decided (`cause`: `SIGKILL`, `exit_1`, ...); counted in the metric. */
  readonly onRestarting: (service: string, cause: string) => void;
  /** The restarted child reported "listening". */
  readonly onRestarted: (service: string, pid: number | undefined, cause: string) => void;
  /** The child is running (true) or down (false). */
  readonly onUp: (service: string, isUp: boolean) => void;
  /** Too many crashes within the window: the supervisor must stop everything and exit 1. */
  readonly onGiveUp: (reason: string) => void;
}

/** A crash cause as a metric label: the signal name, or `exit_<code>`. */
export function exitCause(exit: ChildExit): string {
  return exit.signal ?? `exit_${exit.code}`;
}

/**
 * One service under supervision (router, worker or gateway). `spawn` starts a fresh child each
 * time (it closes over the ports learned at the first start, so a restarted router or gateway
 * listens where the others expect it). Once `supervise` is called, an exit the supervisor did
 * not ask for is a crash: the child is restarted after the policy's backoff, and a child that
 * crashes again before reporting "listening" counts as another crash.
 */
export class SupervisedService {
  private child: Child;
  private isStopping = false;
  private isSupervised = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly budget: RestartBudget;

  constructor(
    readonly name: string,
    private readonly spawn: () => Child,
    private readonly policy: RestartPolicy,
    private readonly startTimeoutMs: number,
    private readonly hooks: SupervisionHooks,
  ) {
    this.budget = new RestartBudget(policy);
    this.child = this.spawnWatched();
  }

  /** The running (or last) child. */
  get current(): Child {
    return this.child;
  }

  /** From now on, unexpected exits restart the child. */
  supervise(): void {
    this.isSupervised = true;
    this.hooks.onUp(this.name, !this.child.hasExited);
    if (this.child.hasExited) void this.child.exited.then((exit) => this.onExit(exit));
  }

  /** Stops the child (no more restarts); resolves once it has exited. */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<void> {
    this.isStopping = true;
    clearTimeout(this.restartTimer);
    await this.child.stop(signal, graceMs);
  }

  private spawnWatched(): Child {
    const child = this.spawn();
    void child.exited.then((exit) => {
      if (child === this.child && this.isSupervised) this.onExit(exit);
    });
    return child;
  }

  private onExit(exit: ChildExit): void {
    if (this.isStopping) return;
    this.hooks.onUp(this.name, false);
    const cause = exitCause(exit);
    const delayMs = this.budget.tryRestartDelay(Date.now());
    if (delayMs === null) {
      const windowS = this.policy.windowMs / 1000;
      this.hooks.onGiveUp(
        `${this.name} crashed ${this.budget.numRecentCrashes} times within ${windowS} s ` +
          `(last: ${describeExit(exit)}); giving up`,
      );
      return;
    }
    this.hooks.log(
      `kiln: ${this.name} exited unexpectedly (${describeExit(exit)}); restarting in ${delayMs} ms`,
    );
    this.hooks.onRestarting(this.name, cause);
    this.restartTimer = setTimeout(() => void this.restart(cause), delayMs);
  }

  private async restart(cause: string): Promise<void> {
    if (this.isStopping) return;
    const child = this.spawnWatched();
    this.child = child;
    try {
      await child.waitForEvent("listening", this.startTimeoutMs);
    } catch (err) {
      // Exited first (its exit is already handled as a crash) or hung: kill it, which is one.
      this.hooks.log(`kiln: ${this.name} did not come back: ${(err as Error).message}`);
      await child.stop("SIGKILL", 0);
      return;
    }
    if (this.isStopping || child !== this.child) return;
    this.hooks.onUp(this.name, true);
    this.hooks.log(`kiln: ${this.name} restarted (pid ${child.pid})`);
    this.hooks.onRestarted(this.name, child.pid, cause);
  }
}
