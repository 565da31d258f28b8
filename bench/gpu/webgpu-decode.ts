// Decode throughput of the WebGPU backend on one model directory, at several batch sizes.
//   tsx bench/gpu/webgpu-decode.ts <modelDir> [--batches 1,16,64] [--context 128] [--steps 64]
// Prints one JSON line per batch size: tokens/s over `steps` decode steps after a prefill of
// `context` tokens per sequence. Meant for a machine with a real GPU (bench/gpu/run.sh); on
// llvmpipe the figures mean nothing.
import { parseArgs } from "node:util";
import { createWebGpuBackend, DEFAULT_SAMPLING, type StepInput } from "@kiln/kernels";

function decodeInput(
  batch: number,
  pos: number,
  blockSize: number,
  blocksPerSeq: number,
): StepInput {
  const tables = Int32Array.from({ length: batch * blocksPerSeq }, (_, i) => i);
  const sample = {
    params: DEFAULT_SAMPLING,
    outputIndex: 0,
    promptTokenIds: [],
    outputTokenIds: [],
  };
  return {
    tokenIds: new Int32Array(batch).fill(1),
    positions: new Int32Array(batch).fill(pos),
    queryLens: new Int32Array(batch).fill(1),
    contextLens: new Int32Array(batch).fill(pos + 1),
    blockTableOffsets: Int32Array.from({ length: batch + 1 }, (_, s) => s * blocksPerSeq),
    blockTables: tables,
    slotMapping: Int32Array.from(
      { length: batch },
      (_, s) =>
        tables[s * blocksPerSeq + Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize),
    ),
    blockCopies: new Int32Array(0),
    samples: Array.from({ length: batch }, () => sample),
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      batches: { type: "string", default: "1,16,64" },
      context: { type: "string", default: "128" },
      steps: { type: "string", default: "64" },
    },
  });
  const modelDir = positionals[0];
  if (modelDir === undefined)
    throw new Error("usage: webgpu-decode <modelDir> [--batches 1,16,64]");
  const batches = values.batches.split(",").map(Number);
  const context = Number(values.context);
  const steps = Number(values.steps);
  const blockSize = 16;
  const blocksPerSeq = Math.ceil((context + steps) / blockSize);
  const maxBatch = Math.max(...batches);
  const backend = await createWebGpuBackend({
    modelDir,
    numBlocks: maxBatch * blocksPerSeq,
    blockSize,
    dawnBackend: process.env.KILN_WEBGPU_BACKEND,
  });
  try {
    for (const batch of batches) {
      // Positions before `context` hold whatever the pool has: decode cost does not depend on it.
      await backend.step(decodeInput(batch, context, blockSize, blocksPerSeq));
      const start = performance.now();
      for (let i = 1; i <= steps; i++) {
        await backend.step(decodeInput(batch, context + i, blockSize, blocksPerSeq));
      }
      const seconds = (performance.now() - start) / 1000;
      const line = { modelDir, adapter: backend.adapter.name, batch, context, steps };
      console.log(JSON.stringify({ ...line, tokensPerSecond: (batch * steps) / seconds }));
    }
  } finally {
    await backend.dispose();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
