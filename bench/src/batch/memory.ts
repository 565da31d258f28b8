/**
 * `npm run bench:batch-memory -w @kiln/bench`: uploads a BENCH_BATCH_LINES-line file (default
 * 10,000), runs it as one batch and samples the gateway's resident memory (VmRSS) every 200 ms
 * from before the upload until the output file is written. Reports the baseline, the peak and
 * the growth, to show the gateway's memory does not grow with the batch.
 */
import { readFileSync } from "node:fs";
import { toFile } from "openai";
import { batchLines, startBenchStack } from "./stack";

const NUM_LINES = Number(process.env.BENCH_BATCH_LINES ?? 10_000);
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 4);

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

async function main(): Promise<void> {
  const stack = await startBenchStack({ KILN_BATCH_CONCURRENCY: "16" });
  const pid = stack.cluster.pids.gateway!;
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rssMiB(pid)), 200);
  try {
    const { client } = stack;
    const baseline = rssMiB(pid);
    const start = performance.now();
    const file = await client.files.create({
      file: await toFile(Buffer.from(batchLines(NUM_LINES, MAX_TOKENS)), "big.jsonl"),
      purpose: "batch",
    });
    const batch = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/completions",
      completion_window: "24h",
    });
    let done = batch;
    const deadline = Date.now() + Number(process.env.BENCH_MAX_WAIT_S ?? 3600) * 1000;
    while (!["completed", "failed", "cancelled", "expired"].includes(done.status)) {
      if (Date.now() > deadline) throw new Error(`batch still ${done.status} at the deadline`);
      await new Promise((r) => setTimeout(r, 500));
      done = await client.batches.retrieve(batch.id);
      const c = done.request_counts;
      process.stderr.write(
        `${done.status} ${c?.completed}+${c?.failed}/${c?.total} rss ${Math.round(samples.at(-1) ?? 0)} MiB\n`,
      );
    }
    const seconds = (performance.now() - start) / 1000;
    const output = await (await client.files.content(done.output_file_id!)).text();
    const report = {
      lines: NUM_LINES,
      status: done.status,
      request_counts: done.request_counts,
      output_lines: output.split("\n").filter((l) => l !== "").length,
      input_bytes: file.bytes,
      seconds: Math.round(seconds * 10) / 10,
      lines_per_s: Math.round(NUM_LINES / seconds),
      gateway_rss_mib: {
        baseline: Math.round(baseline),
        peak: Math.round(Math.max(...samples)),
        growth: Math.round(Math.max(...samples) - baseline),
      },
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    clearInterval(sampler);
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
