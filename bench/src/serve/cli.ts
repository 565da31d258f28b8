/**
 * `npm run bench -- [options]`: the serving benchmark against any OpenAI-compatible endpoint.
 * See `--help` (HELP below) and docs/benchmarks.md.
 */
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { firstServedModel, type Target } from "./client";
import { parseSlos } from "./metrics";
import { createProgress } from "./progress";
import { formatMetrics } from "./report";
import { runLoad } from "./runner";
import { buildWorkload, type DatasetSpec, describeDataset } from "./workload";

const HELP = `npm run bench -- [options]

target
  --base-url URL              server root (default http://127.0.0.1:8000)
  --endpoint PATH             /v1/completions (default) or /v1/chat/completions
  --model NAME                model name to send (default: the first of GET /v1/models)
  --api-key KEY               bearer token (default: $OPENAI_API_KEY)
  --no-ignore-eos             do not send ignore_eos (outputs may end early)
dataset
  --dataset NAME              random (default) | prefix-repetition
  --num-prompts N             requests to send (default 64)
  --random-input-len N        prompt tokens, BOS included (default 128)
  --random-output-len N       max_tokens (default 128)
  --random-range-ratio R      lengths uniform in [len(1-R), len(1+R)] (default 0)
  --prefix-len N --suffix-len N --num-prefixes N --output-len N
                              prefix-repetition shape (defaults 256, 32, 4, 128)
  --vocab-size N              ids are drawn from [3, N) (default 32000, Llama-2)
  --bos-id N|none             first token of every prompt (default 1)
  --prompt-format ids|text    token-id prompts (default) or decoded text (needs --tokenizer)
  --tokenizer DIR             HF tokenizer directory for --prompt-format text
  --seed N                    dataset and arrival seed (default 0)
load
  --max-concurrency LIST      in-flight cap, e.g. 1,4,16: one run per value (default: none)
  --request-rate LIST         Poisson arrivals per second, e.g. 2,8 (default inf: all at once)
  --num-warmups N             unmeasured requests first (default 2)
report
  --goodput SLOS              e.g. "ttft:500 tpot:50 e2el:20000" (ms)
  --percentiles LIST          extra percentiles, e.g. 50,90,99 (default 99)
  --result-file PATH          write JSON results
  --save-detailed             include every request's timings in the JSON
  --label TEXT                name for this target in the output`;

function list(value: string | undefined, fallback: number[]): number[] {
  if (value === undefined) return fallback;
  return value.split(",").map((v) => {
    const n = v.trim() === "inf" ? Number.POSITIVE_INFINITY : Number(v);
    if (Number.isNaN(n) || n <= 0) throw new Error(`expected positive numbers, got "${value}"`);
    return n;
  });
}

function int(value: string | undefined, fallback: number, flag: string): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: expected an integer ≥ 0`);
  return n;
}

const OPTIONS = {
  help: { type: "boolean" },
  "base-url": { type: "string" },
  endpoint: { type: "string" },
  model: { type: "string" },
  "api-key": { type: "string" },
  "no-ignore-eos": { type: "boolean" },
  dataset: { type: "string" },
  "num-prompts": { type: "string" },
  "random-input-len": { type: "string" },
  "random-output-len": { type: "string" },
  "random-range-ratio": { type: "string" },
  "prefix-len": { type: "string" },
  "suffix-len": { type: "string" },
  "num-prefixes": { type: "string" },
  "output-len": { type: "string" },
  "vocab-size": { type: "string" },
  "bos-id": { type: "string" },
  "prompt-format": { type: "string" },
  tokenizer: { type: "string" },
  seed: { type: "string" },
  "max-concurrency": { type: "string" },
  "request-rate": { type: "string" },
  "num-warmups": { type: "string" },
  goodput: { type: "string", multiple: true },
  percentiles: { type: "string" },
  "result-file": { type: "string" },
  "save-detailed": { type: "boolean" },
  label: { type: "string" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>["values"];

function datasetSpec(v: Values): DatasetSpec {
  const name = v.dataset ?? "random";
  if (name === "random") {
    return {
      name,
      inputLen: int(v["random-input-len"], 128, "--random-input-len"),
      outputLen: int(v["random-output-len"], 128, "--random-output-len"),
      rangeRatio: Number(v["random-range-ratio"] ?? 0),
    };
  }
  if (name === "prefix-repetition") {
    return {
      name,
      prefixLen: int(v["prefix-len"], 256, "--prefix-len"),
      suffixLen: int(v["suffix-len"], 32, "--suffix-len"),
      numPrefixes: int(v["num-prefixes"], 4, "--num-prefixes"),
      outputLen: int(v["output-len"], 128, "--output-len"),
    };
  }
  throw new Error(`--dataset: random or prefix-repetition, not ${name}`);
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({ options: OPTIONS });
  if (v.help) {
    console.log(HELP);
    return;
  }
  const baseUrl = v["base-url"] ?? "http://127.0.0.1:8000";
  const apiKey = v["api-key"] ?? process.env.OPENAI_API_KEY ?? null;
  const target: Target = {
    baseUrl,
    endpoint: v.endpoint ?? "/v1/completions",
    model: v.model ?? (await firstServedModel(baseUrl, apiKey)),
    apiKey,
    ignoreEos: !v["no-ignore-eos"],
  };
  const dataset = datasetSpec(v);
  const bos = v["bos-id"] ?? "1";
  const promptFormat = v["prompt-format"] ?? (target.endpoint.includes("chat") ? "text" : "ids");
  if (promptFormat !== "ids" && promptFormat !== "text")
    throw new Error("--prompt-format: ids or text");
  const seed = int(v.seed, 0, "--seed");
  const items = await buildWorkload({
    dataset,
    numPrompts: int(v["num-prompts"], 64, "--num-prompts"),
    seed,
    vocab: {
      vocabSize: int(v["vocab-size"], 32000, "--vocab-size"),
      bosId: bos === "none" ? null : int(bos, 1, "--bos-id"),
      firstSampledId: 3,
    },
    promptFormat,
    tokenizerDir: v.tokenizer ?? null,
  });
  const slos = parseSlos(v.goodput ?? []);
  const percentiles = list(v.percentiles, [99]);
  const label = v.label ?? `${target.model} @ ${baseUrl}`;
  const runs = [];
  for (const rate of list(v["request-rate"], [Number.POSITIVE_INFINITY])) {
    for (const cap of v["max-concurrency"] ? list(v["max-concurrency"], []) : [null]) {
      const title = `${label}: ${describeDataset(dataset)}, rate ${rate}, concurrency ${cap ?? "∞"}`;
      const progress = createProgress(`c=${cap ?? "∞"} r=${rate}`, items.length);
      const result = await runLoad(target, items, {
        requestRate: rate,
        maxConcurrency: cap,
        seed,
        numWarmups: int(v["num-warmups"], 2, "--num-warmups"),
        slos,
        percentiles,
        onProgress: progress.onRequestDone,
      });
      progress.stop();
      console.log(formatMetrics(title, result.metrics));
      runs.push({
        requestRate: Number.isFinite(rate) ? rate : "inf",
        maxConcurrency: cap,
        metrics: result.metrics,
        ...(v["save-detailed"] ? { requests: result.outputs } : {}),
      });
    }
  }
  if (v["result-file"]) {
    const json = {
      date: new Date().toISOString(),
      label,
      target: { ...target, apiKey: undefined },
      dataset,
      numPrompts: items.length,
      seed,
      slos,
      runs,
    };
    await writeFile(v["result-file"], `${JSON.stringify(json, null, 2)}\n`);
    console.log(`results written to ${v["result-file"]}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
