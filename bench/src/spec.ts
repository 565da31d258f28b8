// Speculative decoding speedup (ADR 0017): for each model and concurrency, the same greedy
// load (ignore_eos, fixed max_tokens, seeded random prompts) runs against routers without
// speculation, with n-gram drafts on every step (adaptive off) and with the adaptive policy,
// and with a draft model (a second worker, `--role draft`; by default the model drafts for
// itself, which shows the mechanism's ceiling: nearly every draft is accepted), in the same run and interleaved round by round so machine load drifts over all alike.
// Reports output tok/s, mean TPOT, acceptance rate (accepted / draft tokens, from the router's
// kiln_spec_decode_* counters) and each variant's speedup over no speculation.
//   npm run bench:spec -- [--models llama-110m,stories260K] [--concurrency 1,16]
//                         [--max-tokens 128] [--prompt-len 32] [--rounds 2] [--threads N]
//                         [--variants off,ngram,...] [--draft-model DIR]
// Variants: off, ngram, ngram-adaptive, draft, draft-adaptive. Default: llama-110m runs off and
// the n-gram ones, stories260K off, ngram-adaptive and the draft-model ones.
// llama-110m (random weights) is generated into bench/models/llama-110m on first run.
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { credentials, Metadata } from "@grpc/grpc-js";
import { writeRandomModel } from "@kiln/model";
import { type GenerateEvent, GenerateRequest, RouterClient } from "@kiln/proto";
import { freePort, mulberry32, STORIES_DIR, scrapeSum, waitFor } from "@kiln/test-support";
import { type ServiceProcess, startProcess } from "./compare/processes";

const LLAMA_110M_DIR = resolve(import.meta.dirname, "../models/llama-110m");

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "llama-110m,stories260K" },
    concurrency: { type: "string", default: "1,16" },
    "max-tokens": { type: "string", default: "128" },
    "prompt-len": { type: "string", default: "32" },
    rounds: { type: "string", default: "2" },
    threads: { type: "string" },
    variants: { type: "string" },
    "draft-model": { type: "string" },
  },
});
const maxTokens = Number(values["max-tokens"]);
const promptLen = Number(values["prompt-len"]);
const numRounds = Number(values.rounds);

const NGRAM = { method: "ngram", num_speculative_tokens: 4, prompt_lookup_max: 3 };
// The router never reads the draft model's path: the draft worker is started with it.
const DRAFT = { method: "draft_model", model: "(draft worker)", num_speculative_tokens: 4 };
const ALL_VARIANTS = [
  { name: "off", config: null },
  { name: "ngram", config: { ...NGRAM, adaptive: false } },
  { name: "ngram-adaptive", config: { ...NGRAM, adaptive: true } },
  { name: "draft", config: { ...DRAFT, adaptive: false } },
  { name: "draft-adaptive", config: { ...DRAFT, adaptive: true } },
] as const;
type Variant = (typeof ALL_VARIANTS)[number];
type VariantName = Variant["name"];
const DEFAULT_VARIANTS: Record<string, string> = {
  "llama-110m": "off,ngram,ngram-adaptive",
  stories260K: "off,ngram-adaptive,draft,draft-adaptive",
};

function variantsOf(model: string): Variant[] {
  const names = (values.variants ?? DEFAULT_VARIANTS[model] ?? "off").split(",");
  if (!names.includes("off")) names.unshift("off"); // the baseline every speedup divides by
  return names.map((name) => {
    const variant = ALL_VARIANTS.find((v) => v.name === name);
    if (!variant) throw new Error(`unknown variant ${name}`);
    return variant;
  });
}

interface Stack {
  readonly router: ServiceProcess;
  readonly worker: ServiceProcess;
  readonly draftWorker: ServiceProcess | null;
  readonly client: RouterClient;
  readonly metricsPort: number;
}

interface RunResult {
  readonly numTokens: number;
  readonly seconds: number;
  readonly tpotMs: number;
  readonly numDraftTokens: number;
  readonly numAccepted: number;
}

async function modelDir(name: string): Promise<string> {
  if (name === "stories260K") return STORIES_DIR;
  if (name !== "llama-110m") throw new Error(`unknown model ${name} (llama-110m, stories260K)`);
  const exists = await stat(join(LLAMA_110M_DIR, "model.safetensors")).then(
    () => true,
    () => false,
  );
  if (!exists) {
    console.log(`generating llama-110m into ${LLAMA_110M_DIR} (once)…`);
    await writeRandomModel(LLAMA_110M_DIR, "llama-110m", { seed: 0 });
  }
  return LLAMA_110M_DIR;
}

async function startStack(dir: string, variant: Variant): Promise<Stack> {
  const { config } = variant;
  const metricsPort = await freePort();
  const specArgs = config === null ? [] : ["--speculative-config", JSON.stringify(config)];
  const router = await startProcess("router", "services/router/src/main.ts", {
    args: ["--port", "0", "--metrics-port", `${metricsPort}`, ...specArgs],
  });
  const threadArgs = values.threads === undefined ? [] : ["--threads", values.threads];
  const workerArgs = ["--router", `127.0.0.1:${router.port}`, ...threadArgs];
  const worker = await startProcess("worker", "services/worker/src/main.ts", {
    args: ["--model", dir, ...workerArgs],
  });
  const draftWorker =
    config?.method === "draft_model"
      ? await startProcess("draft", "services/worker/src/main.ts", {
          args: ["--model", values["draft-model"] ?? dir, "--role", "draft", ...workerArgs],
        })
      : null;
  const client = new RouterClient(`127.0.0.1:${router.port}`, credentials.createInsecure());
  await waitFor(
    () =>
      new Promise<boolean>((ok) =>
        client.stats({}, (err, res) => ok(!err && res.replicas.some((r) => r.healthy))),
      ),
    "a healthy replica",
    { timeoutMs: 120_000 },
  );
  if (draftWorker !== null) {
    // The draft worker registers within a second; wait until its drafts are verified.
    await waitFor(
      async () => {
        await generateOne(client, [1, 2, 3], 8);
        return (await scrapeSum(metricsPort, "kiln_spec_decode_num_draft_tokens_total")) > 0;
      },
      "the draft worker attached",
      { timeoutMs: 60_000 },
    );
  }
  return { router, worker, draftWorker, client, metricsPort };
}

/** One greedy stream; resolves with its token arrival times (ms). */
function generate(client: RouterClient, promptTokenIds: number[]): Promise<number[]> {
  return generateOne(client, promptTokenIds, maxTokens);
}

function generateOne(
  client: RouterClient,
  promptTokenIds: number[],
  numTokens: number,
): Promise<number[]> {
  const req = GenerateRequest.fromPartial({
    promptTokenIds,
    maxTokens: numTokens,
    ignoreEos: true,
  });
  const call = client.generate(req, new Metadata());
  const times: number[] = [];
  return new Promise((ok, fail) => {
    call.on("data", (event: GenerateEvent) => {
      if (event.error) fail(new Error(event.error.message));
      const now = performance.now();
      for (const _ of event.token?.tokens ?? []) times.push(now);
    });
    call.on("error", fail);
    call.on("end", () => ok(times));
  });
}

async function run(stack: Stack, concurrency: number, vocabSize: number, round: number) {
  const rng = mulberry32(1000 * round + concurrency);
  const prompts = Array.from({ length: concurrency }, () => [
    1,
    ...Array.from({ length: promptLen - 1 }, () => 3 + Math.floor(rng() * (vocabSize - 3))),
  ]);
  const counter = (name: string) => scrapeSum(stack.metricsPort, `kiln_spec_decode_${name}_total`);
  const [drafts0, accepted0] = [
    await counter("num_draft_tokens"),
    await counter("num_accepted_tokens"),
  ];
  const start = performance.now();
  const streams = await Promise.all(prompts.map((p) => generate(stack.client, p)));
  const seconds = (performance.now() - start) / 1000;
  const tpots = streams.map((t) => (t.at(-1)! - t[0]!) / Math.max(1, t.length - 1));
  return {
    numTokens: streams.reduce((n, t) => n + t.length, 0),
    seconds,
    tpotMs: tpots.reduce((a, b) => a + b, 0) / tpots.length,
    numDraftTokens: (await counter("num_draft_tokens")) - drafts0,
    numAccepted: (await counter("num_accepted_tokens")) - accepted0,
  } satisfies RunResult;
}

function summarize(results: readonly RunResult[]) {
  const numTokens = results.reduce((n, r) => n + r.numTokens, 0);
  const seconds = results.reduce((n, r) => n + r.seconds, 0);
  const drafts = results.reduce((n, r) => n + r.numDraftTokens, 0);
  const accepted = results.reduce((n, r) => n + r.numAccepted, 0);
  return {
    tokPerS: numTokens / seconds,
    tpotMs: results.reduce((n, r) => n + r.tpotMs, 0) / results.length,
    acceptance: drafts === 0 ? null : accepted / drafts,
    drafts,
  };
}

async function benchModel(name: string): Promise<void> {
  const dir = await modelDir(name);
  const vocabSize = name === "stories260K" ? 512 : 32000;
  const VARIANTS = variantsOf(name);
  const stacks = new Map<VariantName, Stack>();
  try {
    for (const v of VARIANTS) stacks.set(v.name, await startStack(dir, v));
    for (const concurrency of values.concurrency.split(",").map(Number)) {
      const results = new Map<VariantName, RunResult[]>(VARIANTS.map((v) => [v.name, []]));
      // Warm-up (first steps allocate scratch; the adaptive policy fits its step-time model).
      for (const v of VARIANTS) await run(stacks.get(v.name)!, concurrency, vocabSize, 99);
      for (let round = 0; round < numRounds; round++) {
        const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
        for (const v of order) {
          results.get(v.name)!.push(await run(stacks.get(v.name)!, concurrency, vocabSize, round));
        }
      }
      const base = summarize(results.get("off")!);
      for (const v of VARIANTS) {
        const s = summarize(results.get(v.name)!);
        const acceptance = s.acceptance === null ? "-" : `${(100 * s.acceptance).toFixed(1)}%`;
        console.log(
          [
            `${name.padEnd(12)} c=${String(concurrency).padEnd(3)} ${v.name.padEnd(15)}`,
            `${s.tokPerS.toFixed(1).padStart(8)} tok/s`,
            `TPOT ${s.tpotMs.toFixed(2).padStart(7)} ms`,
            `accept ${acceptance.padStart(6)} (${s.drafts} drafts)`,
            `speedup ${(s.tokPerS / base.tokPerS).toFixed(2)}x`,
          ].join("  "),
        );
      }
    }
  } finally {
    for (const s of stacks.values()) {
      s.client.close();
      await s.draftWorker?.stop();
      await s.worker.stop();
      await s.router.stop();
    }
  }
}

async function main(): Promise<void> {
  console.log(
    `bench:spec  max_tokens ${maxTokens}, prompt ${promptLen} tokens, ${numRounds} rounds (greedy, ignore_eos)`,
  );
  for (const name of values.models.split(",")) await benchModel(name);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
