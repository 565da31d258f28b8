import type { BenchMetrics, Stats } from "./metrics";

/** Readable output of a run, in the layout of vLLM's `benchmark_serving` summary. */

const WIDTH = 50;

function line(name: string, value: string | number, digits = 2): string {
  const text = typeof value === "number" ? value.toFixed(digits) : value;
  return `${name.padEnd(WIDTH - 10)}${text.padStart(10)}`;
}

function section(title: string): string {
  const pad = Math.max(0, WIDTH - title.length - 2);
  const left = Math.floor(pad / 2);
  return `${"-".repeat(left)} ${title} ${"-".repeat(pad - left)}`;
}

function statLines(title: string, key: string, s: Stats): string[] {
  const out = [
    section(title),
    line(`Mean ${key} (ms):`, s.mean),
    line(`Median ${key} (ms):`, s.median),
  ];
  for (const [name, value] of Object.entries(s.percentiles)) {
    out.push(line(`P${name.slice(1)} ${key} (ms):`, value));
  }
  return out;
}

/** The summary table of one run under `title` (e.g. the target and concurrency). */
export function formatMetrics(title: string, m: BenchMetrics): string {
  const rows = [
    `${"=".repeat(WIDTH)}`,
    section(title).replace(/-/g, "="),
    line("Successful requests:", String(m.numCompleted)),
    line("Failed requests:", String(m.numFailed)),
    line("Peak concurrent requests:", String(m.maxConcurrency)),
    line("Benchmark duration (s):", m.durationS),
    line("Total input tokens:", String(m.totalInputTokens)),
    line("Total generated tokens:", String(m.totalOutputTokens)),
    line("Request throughput (req/s):", m.requestThroughput),
    line("Output token throughput (tok/s):", m.outputThroughput),
    line("Total token throughput (tok/s):", m.totalTokenThroughput),
  ];
  if (m.goodput !== null) rows.push(line("Request goodput (req/s):", m.goodput));
  rows.push(
    ...statLines("Time to First Token", "TTFT", m.ttftMs),
    ...statLines("Time per Output Token (excl. 1st token)", "TPOT", m.tpotMs),
    ...statLines("Inter-token Latency", "ITL", m.itlMs),
    ...statLines("End-to-end Latency", "E2EL", m.e2elMs),
    "=".repeat(WIDTH),
  );
  return rows.join("\n");
}

/** A plain Markdown table: `header` then `rows`, numbers already formatted. */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  const rule = `| ${widths.map((w, i) => (i === 0 ? "-".repeat(w) : `${"-".repeat(w - 1)}:`)).join(" | ")} |`;
  return [fmt(header), rule, ...rows.map(fmt)].join("\n");
}
