// Structured output cost (ADR 0016) on llama-110m (random weights, the 32,000-token Llama-2
// vocabulary), through the real router, worker and gateway processes and the official client:
//   npm run bench:structured [-- --requests 16 --max-tokens 48 --threads N]
// 1. In process, the grammar engine on the 32,000-token vocabulary: compile time of the
//    benchmark schema and the time of one mask (what the worker adds per constrained row).
// 2. On the stack, at concurrency 1 and 16: unconstrained, json_schema with a cold grammar
//    cache (a schema never seen before: every request its own) and with a warm one (one
//    schema, compiled already). Reports TTFT (median), per-stream decode tokens/s (tokens
//    after the first over the time after the first) and the ratios to unconstrained.
// The model is generated into bench/models/llama-110m on first run. Numbers from a shared
// machine are noisy: the three modes run interleaved, round after round.
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startCluster } from "@kiln/cluster";
import { GrammarEngine, loadGrammarVocab } from "@kiln/kernels";
import { loadConfig, writeRandomModel } from "@kiln/model";
import { REPO_ROOT } from "@kiln/test-support";
import OpenAI from "openai";

const MODEL_DIR = resolve(import.meta.dirname, "../models/llama-110m");
const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "16" },
    "max-tokens": { type: "string", default: "48" },
    rounds: { type: "string", default: "2" },
    threads: { type: "string" },
  },
});
const numRequests = Number(values.requests);
const maxTokens = Number(values["max-tokens"]);

/** Bounded and long enough to decode for a while: a list of short words and numbers. */
function schemaOf(salt: number): Record<string, unknown> {
  return {
    type: "object",
    properties: {
      [`id_${salt}`]: { type: "integer", minimum: 0, maximum: 999 },
      words: { type: "array", items: { type: "string", maxLength: 10 }, minItems: 4, maxItems: 8 },
      ok: { type: "boolean" },
    },
    required: [`id_${salt}`, "words", "ok"],
    additionalProperties: false,
  };
}

interface Sample {
  readonly ttftMs: number;
  readonly decodeTps: number | null;
  readonly numTokens: number;
}

async function one(
  client: OpenAI,
  schema: Record<string, unknown> | null,
  seed: number,
): Promise<Sample> {
  const start = performance.now();
  const stream = await client.completions.create({
    model: "llama-110m",
    prompt: "Write a JSON record.",
    max_tokens: maxTokens,
    temperature: 1,
    seed,
    stream: true,
    stream_options: { include_usage: true },
    ...(schema
      ? {
          response_format: {
            type: "json_schema",
            json_schema: { name: "r", schema, strict: true },
          },
        }
      : { ignore_eos: true }),
  } as unknown as OpenAI.CompletionCreateParamsStreaming);
  let first: number | null = null;
  let numTokens = 0;
  for await (const chunk of stream) {
    if (first === null && chunk.choices[0]?.text) first = performance.now();
    if (chunk.usage) numTokens = chunk.usage.completion_tokens;
  }
  const end = performance.now();
  const ttft = (first ?? end) - start;
  const decodeTps =
    first !== null && numTokens > 1 ? (numTokens - 1) / ((end - first) / 1000) : null;
  return { ttftMs: ttft, decodeTps, numTokens };
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
};

type Mode = "unconstrained" | "json_schema cold" | "json_schema warm";
let nextSalt = 1000;

async function runMode(client: OpenAI, mode: Mode, concurrency: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let i = 0; i < numRequests; i += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, numRequests - i) }, (_, j) => {
      const schema =
        mode === "unconstrained" ? null : schemaOf(mode === "json_schema warm" ? 0 : nextSalt++);
      return one(client, schema, i + j);
    });
    samples.push(...(await Promise.all(batch)));
  }
  return samples;
}

async function grammarMicrobench(): Promise<void> {
  const config = await loadConfig(MODEL_DIR);
  const vocab = await loadGrammarVocab(MODEL_DIR, config.vocabSize, config.eosTokenIds);
  let t = performance.now();
  const engine = await GrammarEngine.create(vocab, { maxWhitespace: 2, cacheSize: 16 });
  const infoMs = performance.now() - t;
  const spec = { kind: "json_schema" as const, text: JSON.stringify(schemaOf(1)), strict: true };
  t = performance.now();
  const grammar = await engine.createMatcher(spec);
  const compileMs = performance.now() - t;
  t = performance.now();
  await engine.createMatcher(spec);
  const warmMs = performance.now() - t;
  // Walk a random valid output, timing each mask.
  const maskMs: number[] = [];
  let rng = 1;
  for (let step = 0; step < 200 && !grammar.isTerminated; step++) {
    const m0 = performance.now();
    const mask = await grammar.nextTokenBitmask();
    maskMs.push(performance.now() - m0);
    const allowed: number[] = [];
    for (let id = 0; id < config.vocabSize; id++)
      if ((mask[id >> 5]! >>> (id & 31)) & 1) allowed.push(id);
    rng = (rng * 1103515245 + 12345) & 0x7fffffff;
    grammar.accept(allowed[rng % allowed.length]!);
  }
  const sorted = [...maskMs].sort((a, b) => a - b);
  const mean = maskMs.reduce((a, b) => a + b, 0) / maskMs.length;
  console.log(
    `grammar engine, ${config.vocabSize}-token vocabulary: tokenizer info ${infoMs.toFixed(0)} ms, ` +
      `compile ${compileMs.toFixed(1)} ms cold / ${warmMs.toFixed(2)} ms cached; one mask over ` +
      `${maskMs.length} steps: mean ${mean.toFixed(2)} ms, median ${median(maskMs).toFixed(3)} ms, ` +
      `p90 ${sorted[Math.floor(sorted.length * 0.9)]!.toFixed(2)} ms, max ${sorted.at(-1)!.toFixed(1)} ms ` +
      `(16 constrained rows: ~${(16 * mean).toFixed(1)} ms a step)`,
  );
}

async function main(): Promise<void> {
  if (!(await stat(join(MODEL_DIR, "model.safetensors")).catch(() => null))) {
    console.log(`generating llama-110m into ${MODEL_DIR} (once)…`);
    await writeRandomModel(MODEL_DIR, "llama-110m", { seed: 0 });
  }
  await grammarMicrobench();
  const cluster = await startCluster({
    repoRoot: REPO_ROOT,
    modelDir: MODEL_DIR,
    servedName: "llama-110m",
    host: "127.0.0.1",
    port: 0,
    routerPort: 0,
    drainTimeoutS: 5,
    startTimeoutMs: 180_000,
    env: {
      ...process.env,
      KILN_KV_CACHE_MEMORY: "1GiB",
      ...(values.threads ? { KILN_THREADS: values.threads } : {}),
    },
    log: () => {},
  });
  try {
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${cluster.gatewayPort}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      timeout: 600_000,
    });
    await one(client, null, 0); // warm-up: first forward passes
    for (const concurrency of [1, 16]) {
      const byMode = new Map<Mode, Sample[]>();
      for (let round = 0; round < Number(values.rounds); round++) {
        for (const mode of ["unconstrained", "json_schema cold", "json_schema warm"] as Mode[]) {
          if (mode === "json_schema warm" && round === 0) await one(client, schemaOf(0), 0);
          byMode.set(mode, [
            ...(byMode.get(mode) ?? []),
            ...(await runMode(client, mode, concurrency)),
          ]);
        }
      }
      const base = byMode.get("unconstrained")!;
      const baseTtft = median(base.map((s) => s.ttftMs));
      const baseTps = median(base.flatMap((s) => (s.decodeTps === null ? [] : [s.decodeTps])));
      console.log(
        `\nconcurrency ${concurrency} (${numRequests} requests × ${values.rounds} rounds per mode)`,
      );
      for (const [mode, samples] of byMode) {
        const ttft = median(samples.map((s) => s.ttftMs));
        const tps = median(samples.flatMap((s) => (s.decodeTps === null ? [] : [s.decodeTps])));
        const tokens = median(samples.map((s) => s.numTokens));
        console.log(
          `  ${mode.padEnd(17)} TTFT ${ttft.toFixed(0).padStart(6)} ms (${(ttft / baseTtft).toFixed(2)}×)  ` +
            `decode ${tps.toFixed(1).padStart(6)} tok/s per stream (${(tps / baseTps).toFixed(2)}×)  median tokens ${tokens}`,
        );
      }
    }
  } finally {
    await cluster.stop("bench done");
  }
}

await main();
