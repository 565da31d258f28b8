/**
 * `npm run bench:compare`: Kiln and llama.cpp on the same weights and workload, side by side
 * in one run, then the ratio table and a profile of Kiln's decode step. See HELP.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { type KvCacheDtype, kvBytesPerBlock, parseKvCacheDtype } from "@kiln/kernels";
import { loadConfig } from "@kiln/model";
import type { Target } from "../serve/client";
import { createProgress } from "../serve/progress";
import { formatMetrics } from "../serve/report";
import { runLoad, type WorkItem } from "../serve/runner";
import { buildWorkload } from "../serve/workload";
import { type CpuShare, cpuShareBetween, snapshotCpu } from "./cpu-usage";
import { type MachineInfo, machineInfo } from "./machine";
import { ensureBenchModel, preflightLlamaCpp } from "./preflight";
import { REPO_ROOT } from "./processes";
import type { StepProfileLine, WorkerStepProfileLine } from "./report";
import {
  cpuTable,
  profileTable,
  ratioTable,
  resultsTable,
  type StepProfile,
  type SystemRun,
  summarizeProfile,
} from "./report";
import { measureStepSplit } from "./step-split";
import { type StartedSystem, type SystemOptions, startSystem } from "./systems";

const HELP = `npm run bench:compare -- [options]
  --model DIR            HF model (default bench/models/llama-110m, generated if missing)
  --num-prompts N        requests per run (default 64)
  --input-len N          prompt tokens incl. BOS (default 128)
  --output-len N         generated tokens, ignore_eos (default 128)
  --concurrency LIST     closed-loop concurrencies (default 1,4,16)
  --threads N            compute threads for both systems (default 2)
  --kv-cache-memory S    Kiln worker KV pool (default: room for every sequence of the highest
                         concurrency, at least 1GiB)
  --systems LIST         kiln,llama.cpp (default both)
  --weights W            f32 | bf16 | int8 (default f32): Kiln's --weight-dtype, and llama.cpp
                         on the matching GGUF: F32, F16 (bf16's target compares with F16), Q8_0
  --gguf-type T          override llama.cpp's GGUF type (f32, f16, bf16, q8_0)
  --activation-dtype D   auto | f32 | bf16 (default auto): Kiln's --activation-dtype (bf16:
                         bf16/int8 projections round activations to bfloat16, AVX-512 BF16 dots)
  --kv-cache-dtype D     f32 | bf16 (default f32): Kiln's --kv-cache-dtype
  --no-profile           skip the decode-step profile
  --result-file PATH     JSON results (default bench/results/compare.json, gitignored)
  --markdown-file PATH   also write the tables as Markdown`;

/** llama.cpp's GGUF type for each of Kiln's weight formats (`--weights`). */
const GGUF_TYPE_OF_WEIGHTS: Record<string, string> = { f32: "f32", bf16: "f16", int8: "q8_0" };

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      help: { type: "boolean" },
      model: { type: "string" },
      "num-prompts": { type: "string" },
      "input-len": { type: "string" },
      "output-len": { type: "string" },
      concurrency: { type: "string" },
      threads: { type: "string" },
      "kv-cache-memory": { type: "string" },
      systems: { type: "string" },
      weights: { type: "string" },
      "gguf-type": { type: "string" },
      "kv-cache-dtype": { type: "string" },
      "activation-dtype": { type: "string" },
      "no-profile": { type: "boolean" },
      "result-file": { type: "string" },
      "markdown-file": { type: "string" },
    },
  });
  if (v.help) return console.log(HELP);
  const modelDir = resolve(REPO_ROOT, v.model ?? "bench/models/llama-110m");
  const numThreads = Number(v.threads ?? 2);
  const concurrencies = (v.concurrency ?? "1,4,16").split(",").map(Number);
  const systems = (v.systems ?? "kiln,llama.cpp").split(",");
  const unknown = systems.find((name) => name !== "kiln" && name !== "llama.cpp");
  if (unknown !== undefined) throw new Error(`--systems: kiln and/or llama.cpp, not ${unknown}`);
  const maxConcurrency = Math.max(...concurrencies);
  const weightDtype = v.weights ?? "f32";
  const ggufType = v["gguf-type"] ?? GGUF_TYPE_OF_WEIGHTS[weightDtype];
  if (ggufType === undefined) throw new Error(`--weights: f32, bf16 or int8, not ${weightDtype}`);
  console.log(`weights: Kiln ${weightDtype}, llama.cpp GGUF ${ggufType}`);
  const kvCacheDtype = parseKvCacheDtype(v["kv-cache-dtype"] ?? "f32");
  const activationDtype = v["activation-dtype"] ?? "auto";
  console.log(`Kiln activations: ${activationDtype}, KV cache: ${kvCacheDtype}`);
  // The worker inherits the environment: KILN_OMP_SPINCOUNT=N sets its helpers' spin (ADR 0002).
  const ompSpinCount = process.env.KILN_OMP_SPINCOUNT ?? null;
  console.log(`Kiln OpenMP helper spin: ${ompSpinCount ?? "the worker's default"}`);
  // And the router: multi-step decode (ADR 0028).
  const multiStep = {
    maxSteps: process.env.KILN_NUM_SCHEDULER_STEPS ?? null,
    maxBurstMs: process.env.KILN_MULTI_STEP_MAX_MS ?? null,
  };
  console.log(
    `Kiln multi-step decode: ${multiStep.maxSteps ?? "default"} steps at most, ` +
      `${multiStep.maxBurstMs ?? "default"} ms a burst at most`,
  );
  const inputLen = Number(v["input-len"] ?? 128);
  const outputLen = Number(v["output-len"] ?? 128);

  const machine = machineInfo();
  console.log(describeMachine(machine));
  await ensureBenchModel(modelDir);
  if (systems.includes("llama.cpp")) await preflightLlamaCpp();

  const config = await loadConfig(modelDir);
  const items = await buildWorkload({
    dataset: { name: "random", inputLen, outputLen, rangeRatio: 0 },
    numPrompts: Number(v["num-prompts"] ?? 64),
    seed: 0,
    vocab: { vocabSize: config.vocabSize, bosId: config.bosTokenId, firstSampledId: 3 },
    promptFormat: "ids",
    tokenizerDir: null,
  });

  const runs: SystemRun[] = [];
  const profileLines: StepProfileLine[] = [];
  const workerLines: WorkerStepProfileLine[] = [];
  const options = (maxSeqs: number): SystemOptions => ({
    modelDir,
    numThreads,
    maxConcurrency: maxSeqs,
    kvCacheMemory:
      v["kv-cache-memory"] ??
      defaultKvCacheMemory(config, maxConcurrency, inputLen + outputLen, kvCacheDtype),
    contextSize: 512,
    isProfiled: !v["no-profile"],
    weightDtype,
    ggufType,
    kvCacheDtype,
    activationDtype,
  });
  // Interleaved by concurrency (Kiln c, llama.cpp c, next c…) so that drifting load from
  // other processes hits both systems alike. Kiln stays up (idle) across the runs; llama.cpp
  // gets a server per concurrency with exactly that many sequences, because its batches stay
  // one micro-batch only while every sequence of its context is busy (step-barrier.ts).
  const kiln = systems.includes("kiln") ? await startSystem("kiln", options(maxConcurrency)) : null;
  try {
    for (const c of concurrencies) {
      if (kiln) {
        const run = await runConcurrency(kiln, items, c);
        runs.push(run.run);
        if (c === maxConcurrency) {
          profileLines.push(...run.profileLines);
          workerLines.push(...run.workerLines);
        }
      }
      if (systems.includes("llama.cpp")) {
        const baseline = await startSystem("llama.cpp", options(c));
        try {
          runs.push((await runConcurrency(baseline, items, c)).run);
        } finally {
          await baseline.stop();
        }
      }
    }
  } finally {
    await kiln?.stop();
  }

  let profile: StepProfile | null = null;
  if (!v["no-profile"] && profileLines.length > 0) {
    console.log(`profiling the decode step in-process (batch ${maxConcurrency})…`);
    const split = await measureStepSplit(modelDir, {
      numSeqs: maxConcurrency,
      contextLen: inputLen + Math.floor(outputLen / 2),
      numThreads,
      numReps: 20,
      weightDtype,
      activationDtype,
      kvCacheDtype,
    });
    profile = summarizeProfile(profileLines, workerLines, maxConcurrency, split);
  }

  runs.sort((a, b) => a.system.localeCompare(b.system) || a.maxConcurrency - b.maxConcurrency);
  const tables = [
    `## Results (${items.length} requests, ${inputLen} in / ${outputLen} out, closed loop; weights: Kiln ${weightDtype}, llama.cpp ${ggufType})`,
    resultsTable(runs),
    "## Ratios",
    ratioTable(runs, "kiln", "llama.cpp"),
    ...(profile ? [`## Kiln decode step at batch ${maxConcurrency}`, profileTable(profile)] : []),
    ...runs
      .filter((r) => r.cpu && r.maxConcurrency === maxConcurrency)
      .map((r) => `## CPU during ${r.system} at concurrency ${r.maxConcurrency}\n\n${cpuTable(r)}`),
  ].join("\n\n");
  console.log(`\n${describeMachine(machineInfo())}\n\n${tables}`);
  const resultFile = resolve(REPO_ROOT, v["result-file"] ?? "bench/results/compare.json");
  await mkdir(dirname(resultFile), { recursive: true });
  await writeFile(
    resultFile,
    `${JSON.stringify({ date: new Date().toISOString(), machine, machineAfter: machineInfo(), modelDir, weightDtype, ggufType, activationDtype, kvCacheDtype, ompSpinCount, multiStep, inputLen, outputLen, numPrompts: items.length, numThreads, runs, profile }, null, 2)}\n`,
  );
  console.log(`results written to ${resultFile}`);
  if (v["markdown-file"]) await writeFile(v["markdown-file"], `${tables}\n`);
}

/**
 * A KV pool that holds every sequence of the highest concurrency whole (plus a block each for
 * rounding), at least 1GiB: a smaller pool preempts at concurrency 64 (llama-110m's 128 + 128
 * tokens × 64 sequences need 1.2 GB of f32 KV) and measures recomputation, not batching.
 */
function defaultKvCacheMemory(
  config: { numLayers: number; numKvHeads: number; headDim: number },
  maxConcurrency: number,
  seqLen: number,
  kvCacheDtype: KvCacheDtype,
): string {
  const blockSize = 16;
  const numBlocks = maxConcurrency * (Math.ceil(seqLen / blockSize) + 1);
  return `${Math.max(2 ** 30, numBlocks * kvBytesPerBlock(config, blockSize, kvCacheDtype))}`;
}

/** One closed-loop run at concurrency `c`, with the step-profile lines it produced. */
async function runConcurrency(system: StartedSystem, items: readonly WorkItem[], c: number) {
  const target: Target = {
    baseUrl: system.baseUrl,
    endpoint: "/v1/completions",
    model: system.modelName,
    apiKey: null,
    ignoreEos: true,
  };
  const mark = system.stepProfileLines().length;
  const workerMark = system.workerProfileLines().length;
  const progress = createProgress(`${system.name} c=${c}`, items.length);
  const cpuBefore = snapshotCpu(system.processes);
  const result = await runLoad(target, items, {
    requestRate: Number.POSITIVE_INFINITY,
    maxConcurrency: c,
    seed: 0,
    numWarmups: 2,
    slos: null,
    percentiles: [50, 99],
    onProgress: progress.onRequestDone,
  });
  const cpu = cpuShareBetween(cpuBefore, snapshotCpu(system.processes));
  progress.stop();
  console.log(formatMetrics(`${system.name}, concurrency ${c}`, result.metrics));
  console.log(`CPU share of the machine: ${describeCpu(cpu)}`);
  return {
    run: {
      system: system.name,
      maxConcurrency: c,
      metrics: result.metrics,
      cpu,
    } satisfies SystemRun,
    profileLines: system.stepProfileLines().slice(mark),
    workerLines: system.workerProfileLines().slice(workerMark),
  };
}

function describeCpu(cpu: CpuShare): string {
  const parts = Object.entries(cpu.byProcess).map(([name, share]) => `${name} ${pct(share)}`);
  if (cpu.others !== null) parts.push(`other processes ${pct(cpu.others)}`);
  return parts.join(", ");
}

const pct = (share: number) => `${(100 * share).toFixed(0)}%`;

function describeMachine(m: MachineInfo): string {
  return `machine: ${m.cpuModel}, ${m.numCpus} CPUs, load average ${m.loadAverage.map((l) => l.toFixed(2)).join(" ")}; node ${m.nodeVersion}; Kiln GEMM: ${m.kilnGemm}; llama.cpp ${m.llamaCppRelease}; Kiln at ${m.gitCommit}${m.dirtyFiles.length ? ` + ${m.dirtyFiles.length} uncommitted file(s) under packages/ and services/` : ""}`;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
