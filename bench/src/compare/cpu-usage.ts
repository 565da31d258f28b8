import { readFileSync } from "node:fs";
import { cpus } from "node:os";

/**
 * CPU time from /proc, to say how a run's CPU was spent: each process of the system under
 * test, the load generator (this process), and everything else on the machine (other
 * people's work on a shared machine). Linux only; elsewhere every figure is null.
 */

const CLOCK_TICKS_PER_S = 100; // USER_HZ, 100 on every Linux Node supports

/** utime + stime of `pid` in ms, or null when /proc cannot tell. */
function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
}

/** Busy CPU ms of the whole machine (all cores) since boot, or null off Linux. */
function machineBusyMs(): number | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
    return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
}

export interface CpuSnapshot {
  readonly atMs: number;
  readonly nameToMs: ReadonlyMap<string, number | null>;
  readonly selfMs: number;
  readonly machineMs: number | null;
}

export function snapshotCpu(
  processes: readonly { name: string; pid: number | undefined }[],
): CpuSnapshot {
  const usage = process.cpuUsage();
  return {
    atMs: performance.now(),
    nameToMs: new Map(processes.map((p) => [p.name, processCpuMs(p.pid)])),
    selfMs: (usage.user + usage.system) / 1000,
    machineMs: machineBusyMs(),
  };
}

/** CPU used between two snapshots, as a share of the machine (1 = every core busy). */
export interface CpuShare {
  /** Process name → share; "load generator" is this process. */
  readonly byProcess: Readonly<Record<string, number>>;
  /** Everything else on the machine: other users' processes. */
  readonly others: number | null;
  readonly total: number | null;
}

export function cpuShareBetween(before: CpuSnapshot, after: CpuSnapshot): CpuShare {
  const capacityMs = (after.atMs - before.atMs) * cpus().length;
  const byProcess: Record<string, number> = {};
  let oursMs = 0;
  for (const [name, endMs] of after.nameToMs) {
    const startMs = before.nameToMs.get(name);
    if (endMs === null || startMs === null || startMs === undefined) continue;
    byProcess[name] = (endMs - startMs) / capacityMs;
    oursMs += endMs - startMs;
  }
  byProcess["load generator"] = (after.selfMs - before.selfMs) / capacityMs;
  oursMs += after.selfMs - before.selfMs;
  if (after.machineMs === null || before.machineMs === null) {
    return { byProcess, others: null, total: null };
  }
  const totalMs = after.machineMs - before.machineMs;
  return {
    byProcess,
    others: Math.max(0, totalMs - oursMs) / capacityMs,
    total: totalMs / capacityMs,
  };
}
