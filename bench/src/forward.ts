// Forward-pass throughput of the CPU backend on the llama-110m random model (dim 768, 12 layers,
// 12 heads, FFN 2048, vocab 32000): decode at several batch sizes, each sequence at context
// ~128, and one long prefill. Runs the in-thread CpuModelRunner (what the worker thread runs).
//   tsx bench/src/forward.ts [--batches 1,8,32] [--context 128] [--prefill 512] [--seconds 3]
//                            [--threads N]   (gemm and attention threads; OpenMP's default otherwise)
//                            [--weight-dtype f32|bf16|int8] (or KILN_WEIGHT_DTYPE; ADR 0020)
//                            [--activation-dtype f32|bf16] (or KILN_ACTIVATION_DTYPE; ADR 0020)
//                            [--kv-cache-dtype f32|bf16] (or KILN_KV_CACHE_DTYPE; ADR 0027)
//                            [--profile]     (or KILN_FORWARD_PROFILE=1: per-phase breakdown)
//                            [--compare-prefetch] (the native kernels' software prefetch off
//                                            and on, alternating step by step in this process)
//                            [--compare-lookup] (the same for int8 codes widened to bf16 by
//                                            byte lookups, AVX-512 VBMI; bf16 activations)
//                            [--compare-huge-pages] (steps alternate between two runners, one
//                                            with its weights and KV pool in huge pages)
// The model is generated into bench/models/llama-110m on first run and reused after.
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  attachGemmKernels,
  type CpuModelRunner,
  createGemm,
  createKvLayer,
  DEFAULT_SAMPLING,
  describeNativeGemm,
  type Gemm,
  gemmForWeightDtype,
  gemmKernelsOf,
  loadCpuModelRunner,
  NativeAttention,
  type PackedWeights,
  PagedAttention,
  parseActivationDtype,
  parseKvCacheDtype,
  parseWeightDtype,
  type SampleRequest,
  type StepInput,
  setNativeCodeLookup,
  setNativeHugePages,
  setNativePrefetch,
} from "@kiln/kernels";
import { writeRandomModel } from "@kiln/model";
import { PhaseProfiler } from "./forward-profile";

const MODEL_DIR = resolve(import.meta.dirname, "../models/llama-110m");
const BLOCK_SIZE = 16;
const GREEDY: SampleRequest = {
  params: DEFAULT_SAMPLING,
  outputIndex: 0,
  promptTokenIds: [],
  outputTokenIds: [],
};

async function ensureModel(): Promise<void> {
  try {
    await stat(join(MODEL_DIR, "model.safetensors"));
  } catch {
    console.log(`generating llama-110m into ${MODEL_DIR} (once)…`);
    await writeRandomModel(MODEL_DIR, "llama-110m", { seed: 0 });
  }
}

/**
 * One step for `numSeqs` sequences (firstSeq, firstSeq + 1, …) that each schedule `queryLen`
 * tokens after `prefixLen` cached ones; sequence s owns blocks s × blocksPerSeq onwards.
 */
function makeStep(
  numSeqs: number,
  prefixLen: number,
  queryLen: number,
  blocksPerSeq: number,
  firstSeq = 0,
): StepInput {
  const contextLen = prefixLen + queryLen;
  const numBlocks = Math.ceil(contextLen / BLOCK_SIZE);
  const numTokens = numSeqs * queryLen;
  const tokenIds = new Int32Array(numTokens); // [numTokens]
  const positions = new Int32Array(numTokens); // [numTokens]
  const slotMapping = new Int32Array(numTokens); // [numTokens]
  const blockTables = new Int32Array(numSeqs * numBlocks); // [numSeqs × numBlocks]
  for (let s = 0; s < numSeqs; s++) {
    const firstBlock = (firstSeq + s) * blocksPerSeq;
    for (let b = 0; b < numBlocks; b++) blockTables[s * numBlocks + b] = firstBlock + b;
    for (let i = 0; i < queryLen; i++) {
      const t = s * queryLen + i;
      const pos = prefixLen + i;
      tokenIds[t] = 3 + ((t * 7919 + pos) % 31000);
      positions[t] = pos;
      slotMapping[t] =
        (firstBlock + Math.floor(pos / BLOCK_SIZE)) * BLOCK_SIZE + (pos % BLOCK_SIZE);
    }
  }
  return {
    tokenIds,
    positions,
    queryLens: new Int32Array(numSeqs).fill(queryLen),
    contextLens: new Int32Array(numSeqs).fill(contextLen),
    blockTableOffsets: Int32Array.from({ length: numSeqs + 1 }, (_, s) => s * numBlocks),
    blockTables,
    slotMapping,
    blockCopies: new Int32Array(0),
    samples: new Array(numSeqs).fill(GREEDY),
  };
}

/** A gemm that adds the time of every call to `elapsedMs`. */
class TimedGemm implements Gemm {
  readonly name: string;
  elapsedMs = 0;
  private readonly inner: Gemm;

  constructor(inner: Gemm) {
    this.inner = inner;
    this.name = inner.name;
    const kernels = gemmKernelsOf(inner); // kiln_tier's attention and row kernels follow its gemm
    if (kernels !== null) attachGemmKernels(this, kernels);
  }

  matmulTransB(...args: Parameters<Gemm["matmulTransB"]>): void {
    const start = performance.now();
    this.inner.matmulTransB(...args);
    this.elapsedMs += performance.now() - start;
  }

  packWeights(w: Float32Array, n: number, k: number): PackedWeights {
    return this.inner.packWeights(w, n, k);
  }

  matmulPacked(...args: Parameters<Gemm["matmulPacked"]>): void {
    const start = performance.now();
    this.inner.matmulPacked(...args);
    this.elapsedMs += performance.now() - start;
  }
}

interface Timing {
  /** Median milliseconds per call (the machine is shared: the median resists outliers). */
  readonly callMs: number;
  /** Gemm milliseconds per call, in proportion to the median. */
  readonly gemmMs: number;
}

function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Times `fn(i)`: one warm-up call, then calls until minSeconds (at least 3, at most maxCalls). */
function timeCalls(
  fn: (i: number) => void,
  gemm: TimedGemm,
  minSeconds: number,
  maxCalls: number,
): Timing {
  fn(0);
  const callMs: number[] = [];
  let gemmMs = 0;
  const start = performance.now();
  while (
    callMs.length < 3 ||
    (callMs.length < maxCalls && performance.now() - start < minSeconds * 1000)
  ) {
    const gemmBefore = gemm.elapsedMs;
    const t0 = performance.now();
    fn(callMs.length + 1);
    callMs.push(performance.now() - t0);
    gemmMs += gemm.elapsedMs - gemmBefore;
  }
  const meanMs = callMs.reduce((a, b) => a + b, 0) / callMs.length;
  const medianMs = median(callMs);
  return { callMs: medianMs, gemmMs: (gemmMs / callMs.length) * (medianMs / meanMs) };
}

interface Row {
  readonly name: string;
  readonly numTokens: number;
  readonly stepMs: number;
  readonly gemmMs: number;
  /** Attention of every layer, timed alone on the same shapes; NaN where not measured. */
  readonly attentionMs: number;
}

/** The attention of one step alone (all layers), with the runner's kernel and shapes. */
function attentionMs(
  runner: CpuModelRunner,
  input: StepInput,
  minSeconds: number,
  numThreads: number | undefined,
): number {
  const cfg = runner.config;
  // As in the runner: native attention takes every chunk; without it, long chunks attend
  // through the gemm and the rest through SIMD or TypeScript.
  const isNative = runner.kernels === "native";
  const native = isNative ? NativeAttention.tryCreate({ numThreads }) : null;
  const attention = new PagedAttention(
    { ...cfg, blockSize: BLOCK_SIZE },
    native !== null ? { native } : { gemm: createGemm({ numThreads }) },
  );
  const qDim = cfg.numHeads * cfg.headDim;
  const numTokens = input.tokenIds.length;
  const q = new Float32Array(numTokens * qDim).fill(0.01); // [numTokens, qDim]
  const out = new Float32Array(numTokens * qDim); // [numTokens, qDim]
  const numBlocks = Math.max(...input.blockTables) + 1;
  // One pool per layer, as in the runner, so every layer's K/V comes from memory, not cache.
  const layers = Array.from({ length: cfg.numLayers }, () => {
    const layer = createKvLayer(
      { ...cfg, numBlocks, blockSize: BLOCK_SIZE },
      {
        maxContextLen: cfg.maxPositionEmbeddings,
        useSimd: runner.kernels === "simd",
        dtype: runner.info.kvCacheDtype ?? "f32",
      },
    );
    // Fresh pages all map the kernel's zero page (always cached): write them first.
    const half = layer.keys instanceof Uint16Array ? 0x3f00 : 0.5; // 0.5, or its bf16 bits
    layer.keys.fill(half);
    layer.values.fill(half);
    return layer;
  });
  const run = () => {
    for (const layer of layers) attention.run(out, q, qDim, 0, layer, input);
  };
  return timeCalls(run, new TimedGemm(createGemm()), minSeconds, 50).callMs;
}

/** Something switched off and on in this process, to time steps both ways. */
interface Switch {
  readonly title: string;
  /** Sets it; false where this build or CPU lacks it. */
  readonly set: (on: boolean) => boolean;
}

const SWITCHES = {
  "compare-prefetch": { title: "software prefetch", set: setNativePrefetch },
  "compare-lookup": { title: "int8 codes by byte lookup", set: setNativeCodeLookup },
} as const satisfies Record<string, Switch>;

interface SwitchRow {
  readonly name: string;
  readonly offMs: number;
  readonly onMs: number;
}

/**
 * Median ms per call of `fn(i)` with the switch off and on (a native kernel feature, or which
 * runner the steps run on: the header's --compare-* flags), alternating call by call so that the
 * shared host's drift falls on both alike: at least minSeconds and 3 calls of each.
 */
function compareSwitch(
  feature: Switch,
  name: string,
  fn: (i: number) => void,
  minSeconds: number,
  numInputs: number,
): SwitchRow {
  const times: [number[], number[]] = [[], []];
  fn(0);
  const start = performance.now();
  for (let i = 0; times[1].length < 3 || performance.now() - start < minSeconds * 1000; i++) {
    const on = i % 2;
    feature.set(on === 1);
    const t0 = performance.now();
    fn((i % numInputs) + 1);
    times[on]!.push(performance.now() - t0);
  }
  feature.set(true);
  return { name, offMs: median(times[0]), onMs: median(times[1]) };
}

function printSwitch(feature: Switch, rows: readonly SwitchRow[]): void {
  console.log(`
${feature.title.padEnd(26)}${"off ms".padStart(10)}${"on ms".padStart(10)}${"off ÷ on".padStart(10)}`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(26)}${r.offMs.toFixed(2).padStart(10)}${r.onMs.toFixed(2).padStart(10)}` +
        `${(r.offMs / r.onMs).toFixed(3).padStart(10)}`,
    );
  }
}

/**
 * Prefills every sequence's context, four sequences per step, so that decode attention reads
 * written KV memory (never-written pages all map one zero page, which stays cached).
 */
function fillContexts(
  runner: CpuModelRunner,
  gemm: TimedGemm,
  numSeqs: number,
  contextLen: number,
  blocksPerSeq: number,
): Row {
  const seqsPerStep = Math.min(4, numSeqs);
  const numSteps = Math.ceil(numSeqs / seqsPerStep);
  const gemmBefore = gemm.elapsedMs;
  const start = performance.now();
  for (let step = 0; step < numSteps; step++) {
    const first = step * seqsPerStep;
    runner.step(
      makeStep(Math.min(seqsPerStep, numSeqs - first), 0, contextLen, blocksPerSeq, first),
    );
  }
  return {
    name: `prefill ${seqsPerStep}×${contextLen}`,
    numTokens: seqsPerStep * contextLen,
    stepMs: (performance.now() - start) / numSteps,
    gemmMs: (gemm.elapsedMs - gemmBefore) / numSteps,
    attentionMs: Number.NaN,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      batches: { type: "string", default: "1,8,32" },
      context: { type: "string", default: "128" },
      prefill: { type: "string", default: "512" },
      seconds: { type: "string", default: "3" },
      threads: { type: "string" },
      "weight-dtype": { type: "string", default: process.env.KILN_WEIGHT_DTYPE ?? "f32" },
      "activation-dtype": { type: "string", default: process.env.KILN_ACTIVATION_DTYPE ?? "auto" },
      "kv-cache-dtype": { type: "string", default: process.env.KILN_KV_CACHE_DTYPE ?? "f32" },
      profile: { type: "boolean", default: process.env.KILN_FORWARD_PROFILE === "1" },
      "compare-prefetch": { type: "boolean", default: false },
      "compare-lookup": { type: "boolean", default: false },
      "compare-huge-pages": { type: "boolean", default: false },
    },
  });
  const flags = (Object.keys(SWITCHES) as (keyof typeof SWITCHES)[]).filter((f) => values[f]);
  const isHugePages = values["compare-huge-pages"];
  if (flags.length + (isHugePages ? 1 : 0) > 1) throw new Error("compare one switch at a time");
  const fixedSwitch: Switch | null = flags[0] === undefined ? null : SWITCHES[flags[0]];
  if (!(fixedSwitch?.set(true) ?? true) || (isHugePages && !setNativeHugePages(true))) {
    throw new Error(
      `--${flags[0] ?? "compare-huge-pages"} needs the native addon (npm run build -w @kiln/kernels) and a CPU with it`,
    );
  }
  const numThreads = values.threads === undefined ? undefined : Number(values.threads);
  const batches = values.batches.split(",").map(Number);
  const contextLen = Number(values.context);
  const prefillLen = Number(values.prefill);
  const minSeconds = Number(values.seconds);
  await ensureModel();
  const maxDecodeSteps = 20;
  const blocksPerSeq = Math.ceil((contextLen + maxDecodeSteps + 2) / BLOCK_SIZE);
  const maxBatch = Math.max(...batches);
  const numBlocks = Math.max(maxBatch * blocksPerSeq, Math.ceil(prefillLen / BLOCK_SIZE));
  const weightDtype = parseWeightDtype(values["weight-dtype"]);
  const gemm = new TimedGemm(
    gemmForWeightDtype(createGemm({ numThreads }), weightDtype, {
      numThreads: numThreads ?? 0,
      activations: parseActivationDtype(values["activation-dtype"], weightDtype),
    }),
  );
  const profiler = values.profile ? new PhaseProfiler() : null;
  const load = () =>
    loadCpuModelRunner(MODEL_DIR, {
      numBlocks,
      blockSize: BLOCK_SIZE,
      gemm,
      kvCacheDtype: parseKvCacheDtype(values["kv-cache-dtype"]),
      ...(numThreads === undefined ? {} : { numThreads }),
      ...(profiler === null ? {} : { profiler }),
    });
  // --compare-huge-pages: a second runner whose weights and KV pool are in 4 KiB pages.
  setNativeHugePages(!isHugePages);
  const plainRunner = isHugePages ? await load() : null;
  setNativeHugePages(true);
  const runner = await load();
  let stepRunner = runner; // the one the timed steps run on
  const feature: Switch | null =
    plainRunner === null
      ? fixedSwitch
      : {
          title: "huge pages (weights, KV)",
          set: (on) => {
            stepRunner = on ? runner : plainRunner;
            return true;
          },
        };
  const threads = numThreads === undefined ? "default threads" : `${numThreads} threads`;
  console.log(`native: ${describeNativeGemm()}`);
  console.log(
    `gemm: ${gemm.name} (${threads}); kernels: ${runner.kernels}; ` +
      `KV pool: ${numBlocks} blocks of ${BLOCK_SIZE} (${runner.info.kvCacheDtype})`,
  );

  if (plainRunner !== null) fillContexts(plainRunner, gemm, maxBatch, contextLen, blocksPerSeq);
  const rows: Row[] = [fillContexts(runner, gemm, maxBatch, contextLen, blocksPerSeq)];
  const profiles: string[] = [];
  const switchRows: SwitchRow[] = [];
  for (const batch of batches) {
    const decode = (i: number) => stepRunner.step(makeStep(batch, contextLen + i, 1, blocksPerSeq));
    if (feature !== null) {
      const name = `decode batch ${batch} @ctx ${contextLen}`;
      switchRows.push(compareSwitch(feature, name, decode, 2 * minSeconds, maxDecodeSteps));
    }
    profiler?.reset();
    const { callMs, gemmMs } = timeCalls(decode, gemm, minSeconds, maxDecodeSteps);
    const name = `decode batch ${batch} @ctx ${contextLen}`;
    if (profiler !== null) profiles.push(profiler.summary(name));
    const input = makeStep(batch, contextLen, 1, blocksPerSeq);
    const attn = attentionMs(runner, input, minSeconds, numThreads);
    rows.push({ name, numTokens: batch, stepMs: callMs, gemmMs, attentionMs: attn });
  }
  if (prefillLen > 0) {
    const input = makeStep(1, 0, prefillLen, numBlocks);
    if (feature !== null) {
      const prefill = () => stepRunner.step(input);
      switchRows.push(compareSwitch(feature, `prefill ${prefillLen}`, prefill, 0, 1));
    }
    profiler?.reset();
    const { callMs, gemmMs } = timeCalls(() => runner.step(input), gemm, 0, 3);
    const name = `prefill ${prefillLen}`;
    if (profiler !== null) profiles.push(profiler.summary(name));
    const attn = attentionMs(runner, input, 0, numThreads);
    rows.push({ name, numTokens: prefillLen, stepMs: callMs, gemmMs, attentionMs: attn });
  }
  printTable(rows, batches);
  if (feature !== null) printSwitch(feature, switchRows);
  if (profiles.length > 0) console.log(`\nphases (mean ms per step):\n${profiles.join("\n")}`);
}

function printTable(rows: readonly Row[], batches: readonly number[]): void {
  const share = (ms: number, r: Row) =>
    Number.isNaN(ms)
      ? "–".padStart(16)
      : `${ms.toFixed(1)} (${((100 * ms) / r.stepMs).toFixed(0)}%)`.padStart(16);
  console.log(
    `\n${"case".padEnd(26)}${"tokens".padStart(7)}${"ms/step".padStart(10)}${"tokens/s".padStart(11)}` +
      `${"gemm ms".padStart(16)}${"attention ms".padStart(16)}`,
  );
  for (const r of rows) {
    const tps = (r.numTokens * 1000) / r.stepMs;
    console.log(
      `${r.name.padEnd(26)}${String(r.numTokens).padStart(7)}${r.stepMs.toFixed(1).padStart(10)}` +
        `${tps.toFixed(1).padStart(11)}${share(r.gemmMs, r)}${share(r.attentionMs, r)}`,
    );
  }
  const tpsOf = (b: number) => {
    const r = rows.find((x) => x.name.startsWith(`decode batch ${b} `));
    return r === undefined ? Number.NaN : (r.numTokens * 1000) / r.stepMs;
  };
  const lo = Math.min(...batches);
  const hi = Math.max(...batches);
  const ratio = (tpsOf(hi) / tpsOf(lo)).toFixed(1);
  console.log(`\ndecode batch ${hi} / batch ${lo} tokens/s: ${ratio}× (target ≥ 8×)`);
  console.log("attention is timed alone on the same shapes; the rest of a step is norms, rope,");
  console.log("KV writes and sampling. The machine may be shared: numbers are approximate.");
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
