/** When and how often the supervisor restarts a crashed child. */
export interface RestartPolicy {
  /** Restarts allowed within `windowMs`; one crash more and the supervisor gives up. */
  readonly maxRestarts: number;
  /** The sliding window, in ms, over which crashes are counted. */
  readonly windowMs: number;
  /** Delay before the first restart; each further crash in the window doubles it. */
  readonly backoffInitialMs: number;
  /** Upper bound of the delay. */
  readonly backoffMaxMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  maxRestarts: 5,
  windowMs: 60_000,
  backoffInitialMs: 500,
  backoffMaxMs: 10_000,
};

/**
 * The crash history of one service. Pure: the caller passes the time. `tryRestartDelay` records
 * a crash at `nowMs` and returns how long to wait before restarting, or null when the crashes
 * within the window exceed `maxRestarts` (the supervisor then gives up).
 */
export class RestartBudget {
  private crashTimesMs: number[] = [];

  constructor(private readonly policy: RestartPolicy) {}

  /** Crashes recorded within the window ending at the last recorded crash. */
  get numRecentCrashes(): number {
    return this.crashTimesMs.length;
  }

  tryRestartDelay(nowMs: number): number | null {
    this.crashTimesMs = this.crashTimesMs.filter((t) => nowMs - t < this.policy.windowMs);
    this.crashTimesMs.push(nowMs);
    const numCrashes = this.crashTimesMs.length;
    if (numCrashes > this.policy.maxRestarts) return null;
    const delay = this.policy.backoffInitialMs * 2 ** (numCrashes - 1);
    return Math.min(delay, this.policy.backoffMaxMs);
  }
}
