/**
 * `npm run bench:batch-ttft -w @kiln/bench`: interactive TTFT at concurrency 4, first alone,
 * then with a large batch running in the background, in the same run on the same cluster.
 * Batch lines go to the router at the batch priority class, so interactive requests should be
 * scheduled first: the target is a p50 within 1.2× of the quiet run.
 * Options (env): BENCH_REQUESTS (per phase, default 80), BENCH_BATCH_LINES (default 4000),
 * BENCH_MAX_TOKENS (interactive, default 32), BENCH_BATCH_CONCURRENCY (the gateway's
 * KILN_BATCH_CONCURRENCY, default 8), BENCH_BATCH_CONCURRENCY_BUSY (the gateway's
 * KILN_BATCH_CONCURRENCY_BUSY, default its own), BENCH_ROUNDS (quiet/with-batch pairs, each with
 * a fresh batch, default 3; the median of their p50 ratios is reported).
 */

import type OpenAI from "openai";
import { toFile } from "openai";
import { batchLines, MODEL, percentile, startBenchStack } from "./stack";

const NUM_REQUESTS = Number(process.env.BENCH_REQUESTS ?? 80);
const NUM_BATCH_LINES = Number(process.env.BENCH_BATCH_LINES ?? 4000);
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 32);
const CONCURRENCY = 4;
const BATCH_CONCURRENCY = Number(process.env.BENCH_BATCH_CONCURRENCY ?? 8);
const BATCH_CONCURRENCY_BUSY = process.env.BENCH_BATCH_CONCURRENCY_BUSY;
const NUM_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function ttftMs(client: OpenAI, i: number): Promise<number> {
  const start = performance.now();
  const stream = await client.completions.create({
    model: MODEL,
    prompt: `The little dog ${i}`,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    stream: true,
  });
  let first = Number.NaN;
  for await (const chunk of stream) {
    if (Number.isNaN(first) && chunk.choices[0]?.text) first = performance.now() - start;
  }
  return first;
}

async function phase(client: OpenAI): Promise<number[]> {
  const results: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < NUM_REQUESTS) results.push(await ttftMs(client, next++));
    }),
  );
  return results.filter((x) => !Number.isNaN(x));
}

/** A background batch of NUM_BATCH_LINES lines, running (16 answered) when this returns. */
async function startBackgroundBatch(client: OpenAI): Promise<string> {
  const file = await client.files.create({
    file: await toFile(Buffer.from(batchLines(NUM_BATCH_LINES, 64)), "bg.jsonl"),
    purpose: "batch",
  });
  const batch = await client.batches.create({
    input_file_id: file.id,
    endpoint: "/v1/completions",
    completion_window: "24h",
  });
  // Let the batch fill the engine before measuring.
  for (;;) {
    const b = await client.batches.retrieve(batch.id);
    if ((b.request_counts?.completed ?? 0) >= 16) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return batch.id;
}

/** One round: a quiet phase, then the same with a fresh batch in the background. */
async function round(client: OpenAI) {
  const quiet = await phase(client);
  const batchId = await startBackgroundBatch(client);
  const before = (await client.batches.retrieve(batchId)).request_counts;
  const busy = await phase(client);
  const after = await client.batches.cancel(batchId);
  return {
    quiet_ttft_ms: { p50: percentile(quiet, 50), p95: percentile(quiet, 95) },
    with_batch_ttft_ms: { p50: percentile(busy, 50), p95: percentile(busy, 95) },
    p50_ratio: percentile(busy, 50) / percentile(quiet, 50),
    batch_lines_answered_during_phase:
      (after.request_counts?.completed ?? 0) +
      (after.request_counts?.failed ?? 0) -
      (before?.completed ?? 0) -
      (before?.failed ?? 0),
  };
}

async function main(): Promise<void> {
  const stack = await startBenchStack({
    KILN_BATCH_CONCURRENCY: String(BATCH_CONCURRENCY),
    ...(BATCH_CONCURRENCY_BUSY ? { KILN_BATCH_CONCURRENCY_BUSY: BATCH_CONCURRENCY_BUSY } : {}),
  });
  try {
    const { client } = stack;
    await phase(client); // warm-up
    const rounds = [];
    for (let r = 0; r < NUM_ROUNDS; r++) rounds.push(await round(client));
    const ratios = rounds.map((r) => r.p50_ratio).sort((a, b) => a - b);
    const report = {
      concurrency: CONCURRENCY,
      batch_concurrency: BATCH_CONCURRENCY,
      batch_concurrency_busy: BATCH_CONCURRENCY_BUSY ?? "default",
      requests_per_phase: NUM_REQUESTS,
      rounds,
      median_p50_ratio: ratios[Math.floor(ratios.length / 2)],
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
