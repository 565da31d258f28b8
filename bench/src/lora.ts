// LoRA multiplexing throughput (ADR 0015): llama-110m (random weights) decoding at concurrency
// 16, first as the base model alone, then with 16 random rank-16 adapters spread evenly (one
// per sequence, all seven projections, 16 resident slots), in the same run and interleaved so
// machine load drifts over both alike (steps alternate one by one). Reports decode tokens/s of each and the ratio.
//   tsx bench/src/lora.ts [--concurrency 16] [--adapters 16] [--rank 16] [--context 128]
//                         [--rounds 3] [--seconds 2] [--threads N]
// The model is generated into bench/models/llama-110m (and adapters beside it) on first run.
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  DEFAULT_SAMPLING,
  describeNativeGemm,
  loadCpuModelRunner,
  type StepInput,
} from "@kiln/kernels";
import { loadConfig, loadLoraAdapter, writeRandomLoraAdapter, writeRandomModel } from "@kiln/model";

const MODEL_DIR = resolve(import.meta.dirname, "../models/llama-110m");
const BLOCK_SIZE = 16;

const { values } = parseArgs({
  options: {
    concurrency: { type: "string", default: "16" },
    adapters: { type: "string", default: "16" },
    rank: { type: "string", default: "16" },
    context: { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "2" },
    threads: { type: "string" },
  },
});
const concurrency = Number(values.concurrency);
const numAdapters = Number(values.adapters);
const rank = Number(values.rank);
const context = Number(values.context);

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** One decode step: sequence s at position `context - 1`, in its own blocks. */
function decodeStep(loraSlots: Int32Array | undefined): StepInput {
  const blocksPerSeq = Math.ceil(context / BLOCK_SIZE);
  const pos = context - 1;
  const blockTables = new Int32Array(concurrency * blocksPerSeq);
  for (let i = 0; i < blockTables.length; i++) blockTables[i] = i;
  return {
    tokenIds: Int32Array.from({ length: concurrency }, (_, s) => 3 + ((s * 7919) % 31000)),
    positions: new Int32Array(concurrency).fill(pos),
    queryLens: new Int32Array(concurrency).fill(1),
    contextLens: new Int32Array(concurrency).fill(context),
    blockTableOffsets: Int32Array.from({ length: concurrency + 1 }, (_, s) => s * blocksPerSeq),
    blockTables,
    slotMapping: Int32Array.from(
      { length: concurrency },
      (_, s) => (s * blocksPerSeq + Math.floor(pos / BLOCK_SIZE)) * BLOCK_SIZE + (pos % BLOCK_SIZE),
    ),
    blockCopies: new Int32Array(0),
    samples: new Array(concurrency).fill({
      params: DEFAULT_SAMPLING,
      outputIndex: 0,
      promptTokenIds: [],
      outputTokenIds: [],
    }),
    ...(loraSlots ? { loraSlots } : {}),
  };
}

async function main(): Promise<void> {
  if (!(await exists(join(MODEL_DIR, "model.safetensors")))) {
    console.log(`generating llama-110m into ${MODEL_DIR} (once)…`);
    await writeRandomModel(MODEL_DIR, "llama-110m", { seed: 0 });
  }
  const config = await loadConfig(MODEL_DIR);
  const runner = await loadCpuModelRunner(MODEL_DIR, {
    numBlocks: concurrency * Math.ceil(context / BLOCK_SIZE),
    blockSize: BLOCK_SIZE,
    maxLoras: numAdapters,
    ...(values.threads ? { numThreads: Number(values.threads) } : {}),
  });
  for (let a = 0; a < numAdapters; a++) {
    const dir = resolve(MODEL_DIR, `../llama-110m-lora-r${rank}-${a}`);
    if (!(await exists(join(dir, "adapter_model.safetensors")))) {
      await writeRandomLoraAdapter(dir, config, { rank, seed: 1000 + a, bRange: 0.05 });
    }
    runner.lora.load(a, await loadLoraAdapter(dir, config, rank));
  }
  const base = decodeStep(undefined);
  const mixed = decodeStep(Int32Array.from({ length: concurrency }, (_, s) => s % numAdapters));
  // Base and adapter steps alternate one by one, each timed alone, so load from other work on a
  // shared machine falls on both alike (2 s windows of each drifted by ±50 %).
  const measurePair = (): [number, number] => {
    runner.step(base); // warm-up
    runner.step(mixed);
    const elapsed = [0, 0];
    let steps = 0;
    const start = performance.now();
    while (performance.now() - start < 2 * Number(values.seconds) * 1000) {
      for (const [i, input] of [base, mixed].entries()) {
        const t0 = performance.now();
        runner.step(input);
        elapsed[i]! += performance.now() - t0;
      }
      steps++;
    }
    return [(steps * concurrency * 1000) / elapsed[0]!, (steps * concurrency * 1000) / elapsed[1]!];
  };
  console.log(`gemm: ${describeNativeGemm()}; kernels: ${runner.kernels}`);
  console.log(
    `llama-110m decode, concurrency ${concurrency}, context ${context}; ${numAdapters} adapters of rank ${rank}`,
  );
  const ratios: number[] = [];
  for (let r = 0; r < Number(values.rounds); r++) {
    const [baseTps, loraTps] = measurePair();
    ratios.push(loraTps / baseTps);
    console.log(
      `round ${r + 1}: base ${baseTps.toFixed(1)} tok/s, ${numAdapters} adapters ${loraTps.toFixed(1)} tok/s, ratio ${(loraTps / baseTps).toFixed(3)}`,
    );
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(
    `median ratio (adapters / base): ${sorted[Math.floor(sorted.length / 2)]!.toFixed(3)}`,
  );
}

await main();
