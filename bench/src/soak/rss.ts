import { readFileSync } from "node:fs";

/** Resident set size of `pid` in bytes (Linux /proc), or null when it is gone or unreadable. */
export function readRssBytes(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** One sample of every process's RSS, `atS` seconds after the soak started. */
export interface RssSample {
  readonly atS: number;
  readonly mib: Readonly<Record<string, number>>;
}

/** How one process's memory moved: at the end of warm-up, its peak after, and at the end. */
export interface RssGrowth {
  readonly process: string;
  readonly warmMib: number;
  readonly peakMib: number;
  readonly endMib: number;
  readonly growthMib: number;
}

/**
 * RSS growth per process once warm: the peak of the samples after `warmS` minus the peak up
 * to `warmS` (allocators grow to a working set in the first minutes, then must stay there).
 */
export function rssGrowth(samples: readonly RssSample[], warmS: number): RssGrowth[] {
  const names = Object.keys(samples[0]?.mib ?? {});
  return names.map((name) => {
    const values = (pred: (s: RssSample) => boolean) =>
      samples.filter(pred).map((s) => s.mib[name] ?? 0);
    const warm = Math.max(...values((s) => s.atS <= warmS));
    const after = values((s) => s.atS > warmS);
    const peak = Math.max(...after);
    return {
      process: name,
      warmMib: warm,
      peakMib: peak,
      endMib: after.at(-1) ?? warm,
      growthMib: peak - warm,
    };
  });
}
