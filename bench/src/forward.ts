// Forward-pass throughput of the CPU backend on the llama-110m random model (dim 768, 12 layers,
// 12 heads, FFN 2048, vocab 32000): decode at several batch sizes, each sequence at context
// ~128, and one long prefill. Runs the in-thread CpuModelRunner (what the worker thread runs).
//   tsx bench/src/forward.ts [--batches 1,8,32] [--context 128] [--prefill 512] [--seconds 3]
// The model is generated into bench/models/llama-110m on first run and reused after.
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  type CpuModelRunner,
  createKvLayer,
  DEFAULT_SAMPLING,
  loadCpuModelRunner,
  PagedAttention,
  type SampleRequest,
  type StepInput,
} from "@kiln/kernels";
import { writeRandomModel } from "@kiln/model";

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
 * One step for `numSeqs` sequences that each schedule `queryLen` tokens after `prefixLen`
 * cached ones; sequence s owns blocks s × blocksPerSeq onwards. The cached prefix is whatever
 * the pool holds: throughput does not depend on the values.
 */
function makeStep(
  numSeqs: number,
  prefixLen: number,
  queryLen: number,
  blocksPerSeq: number,
): StepInput {
  const contextLen = prefixLen + queryLen;
  const numBlocks = Math.ceil(contextLen / BLOCK_SIZE);
  const numTokens = numSeqs * queryLen;
  const tokenIds = new Int32Array(numTokens); // [numTokens]
  const positions = new Int32Array(numTokens); // [numTokens]
  const slotMapping = new Int32Array(numTokens); // [numTokens]
  const blockTables = new Int32Array(numSeqs * numBlocks); // [numSeqs × numBlocks]
  for (let s = 0; s < numSeqs; s++) {
    for (let b = 0; b < numBlocks; b++) blockTables[s * numBlocks + b] = s * blocksPerSeq + b;
    for (let i = 0; i < queryLen; i++) {
      const t = s * queryLen + i;
      const pos = prefixLen + i;
      tokenIds[t] = 3 + ((t * 7919 + pos) % 31000);
      positions[t] = pos;
      slotMapping[t] =
        (s * blocksPerSeq + Math.floor(pos / BLOCK_SIZE)) * BLOCK_SIZE + (pos % BLOCK_SIZE);
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

/** Milliseconds per call of `fn(i)`: one warm-up call, then until minSeconds (≥ 2 calls). */
function timeCalls(fn: (i: number) => void, minSeconds: number, maxCalls: number): number {
  fn(0);
  const start = performance.now();
  let numCalls = 0;
  while (numCalls < 2 || (numCalls < maxCalls && performance.now() - start < minSeconds * 1000)) {
    fn(numCalls + 1);
    numCalls++;
  }
  return (performance.now() - start) / numCalls;
}

interface Row {
  readonly name: string;
  readonly numTokens: number;
  readonly stepMs: number;
  readonly attentionMs: number;
}

/** The attention of one step alone (all layers), with the runner's kernel and shapes. */
function attentionMs(runner: CpuModelRunner, input: StepInput, minSeconds: number): number {
  const cfg = runner.config;
  const attention = new PagedAttention({ ...cfg, blockSize: BLOCK_SIZE });
  const qDim = cfg.numHeads * cfg.headDim;
  const numTokens = input.tokenIds.length;
  const q = new Float32Array(numTokens * qDim).fill(0.01); // [numTokens, qDim]
  const out = new Float32Array(numTokens * qDim); // [numTokens, qDim]
  const numBlocks = Math.max(...input.blockTables) + 1;
  // One pool per layer, as in the runner, so every layer's K/V comes from memory, not cache.
  const layers = Array.from({ length: cfg.numLayers }, () =>
    createKvLayer(
      { ...cfg, numBlocks, blockSize: BLOCK_SIZE },
      { maxContextLen: cfg.maxPositionEmbeddings },
    ),
  );
  return timeCalls(
    () => {
      for (const layer of layers) attention.run(out, q, qDim, 0, layer, input);
    },
    minSeconds / 2,
    50,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      batches: { type: "string", default: "1,8,32" },
      context: { type: "string", default: "128" },
      prefill: { type: "string", default: "512" },
      seconds: { type: "string", default: "3" },
    },
  });
  const batches = values.batches.split(",").map(Number);
  const contextLen = Number(values.context);
  const prefillLen = Number(values.prefill);
  const minSeconds = Number(values.seconds);
  await ensureModel();
  const maxDecodeSteps = 20;
  const blocksPerSeq = Math.ceil((contextLen + maxDecodeSteps + 2) / BLOCK_SIZE);
  const maxBatch = Math.max(...batches);
  const numBlocks = Math.max(maxBatch * blocksPerSeq, Math.ceil(prefillLen / BLOCK_SIZE));
  const runner = await loadCpuModelRunner(MODEL_DIR, { numBlocks, blockSize: BLOCK_SIZE });
  console.log(`gemm: ${runner.gemm.name}; KV pool: ${numBlocks} blocks of ${BLOCK_SIZE}`);

  const rows: Row[] = [];
  for (const batch of batches) {
    const stepMs = timeCalls(
      (i) => runner.step(makeStep(batch, contextLen + i, 1, blocksPerSeq)),
      minSeconds,
      maxDecodeSteps,
    );
    const attn = attentionMs(runner, makeStep(batch, contextLen, 1, blocksPerSeq), minSeconds);
    rows.push({
      name: `decode batch ${batch} @ctx ${contextLen}`,
      numTokens: batch,
      stepMs,
      attentionMs: attn,
    });
  }
  if (prefillLen > 0) {
    const input = makeStep(1, 0, prefillLen, numBlocks);
    const start = performance.now();
    runner.step(input);
    const stepMs = performance.now() - start;
    const attn = attentionMs(runner, input, 0);
    rows.push({ name: `prefill ${prefillLen}`, numTokens: prefillLen, stepMs, attentionMs: attn });
  }
  printTable(rows, batches);
}

function printTable(rows: readonly Row[], batches: readonly number[]): void {
  console.log("\ncase                      tokens   ms/step   tokens/s   attention ms (share)");
  for (const r of rows) {
    const tps = (r.numTokens * 1000) / r.stepMs;
    const share = ((100 * r.attentionMs) / r.stepMs).toFixed(0);
    console.log(
      `${r.name.padEnd(26)}${String(r.numTokens).padStart(6)}${r.stepMs.toFixed(1).padStart(10)}` +
        `${tps.toFixed(1).padStart(11)}${r.attentionMs.toFixed(1).padStart(10)} (${share}%)`,
    );
  }
  const tpsOf = (b: number) => {
    const r = rows.find((x) => x.name.startsWith(`decode batch ${b} `));
    return r === undefined ? Number.NaN : (r.numTokens * 1000) / r.stepMs;
  };
  const lo = Math.min(...batches);
  const hi = Math.max(...batches);
  console.log(
    `\ndecode batch ${hi} / batch ${lo} tokens/s: ${(tpsOf(hi) / tpsOf(lo)).toFixed(1)}× (target ≥ 8×)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
