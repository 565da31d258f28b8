// bench:tp — tensor parallelism on the llama-110m random model (ADR 0018), all in one run so the
// figures are side by side on the same (possibly shared) machine:
//   1. single-stream decode tok/s: T = 1 with 1 thread against T = 2 with 1 thread per rank
//      (rank 0 in this process's backend thread, rank 1 in its own process), interleaved rounds;
//   2. all-reduce cost: µs per shared-memory all-reduce of one decode token's hidden state
//      (768 floats) between two processes, × 2 per layer = the cost per decode step;
//   3. resident memory of each rank's process after loading, at T = 1, 2 and 4.
//   npm run bench:tp [-- --rounds 3 --tokens 48 --prompt 64]
import { spawn } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import {
  type Backend,
  createCpuBackend,
  DEFAULT_SAMPLING,
  kvBytesPerBlock,
  type SampleRequest,
  type StepInput,
} from "@kiln/kernels";
import { loadConfig, planTensorShard, writeRandomModel } from "@kiln/model";

const MODEL_DIR = resolve(import.meta.dirname, "../../models/llama-110m");
const RANK_SCRIPT = join(import.meta.dirname, "rank.ts");
const BLOCK_SIZE = 16;
const NUM_BLOCKS = 64;
const GREEDY: SampleRequest = {
  params: DEFAULT_SAMPLING,
  outputIndex: 0,
  promptTokenIds: [],
  outputTokenIds: [],
};

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    tokens: { type: "string", default: "48" },
    prompt: { type: "string", default: "64" },
  },
});
const numRounds = Number(values.rounds);
const numTokens = Number(values.tokens);
const promptLen = Number(values.prompt);

async function ensureModel(): Promise<void> {
  try {
    await stat(join(MODEL_DIR, "model.safetensors"));
  } catch {
    console.log(`generating llama-110m into ${MODEL_DIR} (once)…`);
    await writeRandomModel(MODEL_DIR, "llama-110m", { seed: 0 });
  }
}

interface RankProcess {
  readonly kill: () => void;
  readonly event: Promise<Record<string, unknown>>;
}

function startRank(args: readonly string[]): RankProcess {
  const child = spawn(process.execPath, ["--import", "tsx", RANK_SCRIPT, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const event = new Promise<Record<string, unknown>>((resolveEvent, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("{")) resolveEvent(JSON.parse(line) as Record<string, unknown>);
    });
    child.once("exit", (code) => reject(new Error(`rank process exited (${code})`)));
  });
  event.catch(() => {});
  return { kill: () => child.kill("SIGKILL"), event };
}

function step(tokens: readonly number[], startPos: number, sample: boolean): StepInput {
  const n = tokens.length;
  const contextLen = startPos + n;
  const blockTables = Int32Array.from({ length: Math.ceil(contextLen / BLOCK_SIZE) }, (_, i) => i);
  return {
    tokenIds: Int32Array.from(tokens),
    positions: Int32Array.from({ length: n }, (_, i) => startPos + i),
    queryLens: Int32Array.of(n),
    contextLens: Int32Array.of(contextLen),
    blockTableOffsets: Int32Array.of(0, blockTables.length),
    blockTables,
    slotMapping: Int32Array.from({ length: n }, (_, i) => startPos + i),
    blockCopies: new Int32Array(0),
    samples: [sample ? GREEDY : null],
  };
}

/** Prefill `promptLen` tokens, then decode `numTokens` one at a time: decode tok/s. */
async function decodeTokPerS(backend: Backend): Promise<number> {
  const prompt = Array.from({ length: promptLen }, (_, i) => 3 + ((i * 7919) % 31000));
  let last = (await backend.step(step(prompt, 0, true))).sampled[0]!.tokenId;
  const start = performance.now();
  for (let i = 0; i < numTokens; i++) {
    last = (await backend.step(step([last], promptLen + i, true))).sampled[0]!.tokenId;
  }
  return (numTokens * 1000) / (performance.now() - start);
}

async function decodeComparison(): Promise<void> {
  const single = await createCpuBackend({
    modelDir: MODEL_DIR,
    numBlocks: NUM_BLOCKS,
    blockSize: BLOCK_SIZE,
    numThreads: 1,
  });
  const groupId = `bench-${process.pid}`;
  const follower = startRank([MODEL_DIR, groupId, "1", "2", "backend", String(NUM_BLOCKS)]);
  const leader = await createCpuBackend({
    modelDir: MODEL_DIR,
    numBlocks: NUM_BLOCKS,
    blockSize: BLOCK_SIZE,
    numThreads: 1,
    tensorParallel: { groupId, rank: 0, size: 2, timeoutMs: 30_000 },
  });
  await follower.event;
  const t1: number[] = [];
  const t2: number[] = [];
  for (let r = 0; r < numRounds; r++) {
    t1.push(await decodeTokPerS(single));
    t2.push(await decodeTokPerS(leader));
  }
  const best = (xs: number[]) => Math.max(...xs);
  console.log(
    `decode, single stream, prompt ${promptLen}, ${numTokens} tokens, ${numRounds} interleaved rounds:`,
  );
  console.log(`  T=1 (1 thread):          ${t1.map((x) => x.toFixed(1)).join(", ")} tok/s`);
  console.log(`  T=2 (1 thread per rank): ${t2.map((x) => x.toFixed(1)).join(", ")} tok/s`);
  console.log(`  speed-up (best/best): ${(best(t2) / best(t1)).toFixed(2)}×`);
  follower.kill();
  await Promise.all([single.dispose(), leader.dispose()]);
}

async function allReduceCost(): Promise<void> {
  const config = await loadConfig(MODEL_DIR);
  const n = config.hiddenSize;
  const groupId = `bench-ar-${process.pid}`;
  const ranks = [0, 1].map((r) =>
    startRank(["-", groupId, String(r), "2", "allreduce", String(n)]),
  );
  const results = await Promise.all(ranks.map((r) => r.event));
  const us = Number(results[0]!.usPerOp);
  const perStep = us * 2 * config.numLayers;
  console.log(`all-reduce of ${n} floats between 2 processes: ${us.toFixed(2)} µs`);
  console.log(
    `  per decode step (2 per layer × ${config.numLayers} layers): ${(perStep / 1000).toFixed(3)} ms`,
  );
}

async function memoryPerRank(): Promise<void> {
  const config = await loadConfig(MODEL_DIR);
  console.log("resident memory per rank after loading (RSS; KV pages count once touched):");
  const tiny = resolve(import.meta.dirname, "../../../../shared/models/stories260K");
  const base = startRank([tiny, `bench-base-${process.pid}`, "0", "1", "backend", "1"]);
  const baseRss = Number((await base.event).rss) / 2 ** 20;
  base.kill();
  console.log(
    `  a rank process with a 1 MB model (Node, tsx, addon, oneDNN): ${baseRss.toFixed(0)} MiB`,
  );
  for (const size of [1, 2, 4]) {
    const groupId = `bench-mem-${process.pid}-${size}`;
    const ranks = Array.from({ length: size }, (_, r) =>
      startRank([MODEL_DIR, groupId, String(r), String(size), "backend", String(NUM_BLOCKS)]),
    );
    const events = await Promise.all(ranks.map((r) => r.event));
    const local = planTensorShard(config, 0, size).config;
    const kvMiB = (NUM_BLOCKS * kvBytesPerBlock(local, BLOCK_SIZE)) / 2 ** 20;
    const rss = events.map((e) => (Number(e.rss) / 2 ** 20).toFixed(0));
    console.log(
      `  T=${size}: rank RSS ${rss.join(", ")} MiB (KV pool ${kvMiB.toFixed(1)} MiB per rank)`,
    );
    for (const r of ranks) r.kill();
  }
}

const only = process.env.KILN_BENCH_TP_ONLY; // "decode" | "allreduce" | "memory"
await ensureModel();
console.log("(machine may be shared: compare only figures from the same run)");
if (!only || only === "decode") await decodeComparison();
if (!only || only === "allreduce") await allReduceCost();
if (!only || only === "memory") await memoryPerRank();
// Ranks were killed, not closed: remove this run's shared-memory segments (Linux: /dev/shm).
for (const name of readdirSync("/dev/shm")) {
  if (name.startsWith("kiln-tp-bench") && name.includes(String(process.pid))) {
    rmSync(join("/dev/shm", name), { force: true });
  }
}
process.exit(0);
