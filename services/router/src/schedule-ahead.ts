import { availableParallelism, networkInterfaces } from "node:os";

/**
 * KILN_SCHEDULE_AHEAD / --schedule-ahead (ADR 0021): whether the router plans step N + 1 while
 * the worker computes step N. `auto` (the default) does unless the worker shares this machine
 * and its compute threads take every core: then the router, the gateway and the clients run
 * on the cores the kernels use, and the work that planning ahead moves into a step slows the
 * step by more than it saves (measured on a 2-core machine, docs/benchmarks.md).
 */
export type ScheduleAheadMode = "auto" | "on" | "off";

const MODES: readonly ScheduleAheadMode[] = ["auto", "on", "off"];

/** Parses the setting; undefined is `auto`. Throws naming `flag` for anything else. */
export function scheduleAheadOption(value: string | undefined, flag: string): ScheduleAheadMode {
  if (value === undefined) return "auto";
  const mode = value.trim().toLowerCase();
  if ((MODES as readonly string[]).includes(mode)) return mode as ScheduleAheadMode;
  throw new Error(`${flag}: expected auto, on or off, got ${JSON.stringify(value)}`);
}

/** What `auto` weighs: where the worker runs, its compute threads, this machine's cores. */
export interface ScheduleAheadFacts {
  /** The worker's address as the router dials it (host:port). */
  readonly workerAddress: string;
  /** WorkerInfo.num_compute_threads: 0 on a GPU. */
  readonly numComputeThreads: number;
  /** Cores of this machine (os.availableParallelism). */
  readonly numCores: number;
  /** This machine's own addresses (loopback included). */
  readonly localHosts: ReadonlySet<string>;
}

export function shouldScheduleAhead(mode: ScheduleAheadMode, facts: ScheduleAheadFacts): boolean {
  if (mode !== "auto") return mode === "on";
  const isLocal = facts.localHosts.has(hostOf(facts.workerAddress));
  return !(isLocal && facts.numComputeThreads >= facts.numCores);
}

/** The facts of this machine, for a worker at `workerAddress`. */
export function localFacts(workerAddress: string, numComputeThreads: number): ScheduleAheadFacts {
  const localHosts = new Set(["localhost", "127.0.0.1", "::1", "0.0.0.0", "::"]);
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) localHosts.add(address.address);
  }
  return { workerAddress, numComputeThreads, numCores: availableParallelism(), localHosts };
}

/** The host of "host:port", "[v6]:port" or a bare host. */
function hostOf(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const colon = address.lastIndexOf(":");
  return colon > 0 && address.indexOf(":") === colon ? address.slice(0, colon) : address;
}
