// Milliseconds to sample a batch of logit rows at the Llama-2 vocabulary (32000): the
// TypeScript sampler (the reference) against the native one (native/sampling.cc), side by side
// in one run, for greedy with its logprob (what the serving benchmarks use) and for
// temperature with top-k / top-p and 5 top logprobs. Medians of interleaved passes.
//   tsx bench/src/sampling.ts [--batch 1,16,64] [--passes 7]
// Numbers move with whatever else runs on the machine; compare the two columns of one run.
import { parseArgs } from "node:util";
import {
  createSamplingScratch,
  DEFAULT_SAMPLING,
  type RowSampler,
  type SampleRequest,
  sampleRow,
  tryNativeRowSampler,
} from "@kiln/kernels";

const VOCAB_SIZE = 32000;

const { values } = parseArgs({
  options: { batch: { type: "string" }, passes: { type: "string" } },
});
const batches = (values.batch ?? "1,16,64").split(",").map(Number);
const numPasses = Number(values.passes ?? 7);
const native = tryNativeRowSampler();
if (native === null)
  throw new Error("the kiln_gemm addon is not built: npm run build -w @kiln/kernels");

const cases: { label: string; req: SampleRequest }[] = [
  {
    label: "greedy + logprob",
    req: { params: DEFAULT_SAMPLING, outputIndex: 0, promptTokenIds: [], outputTokenIds: [] },
  },
  {
    label: "T=1 (OpenAI's default: no truncation)",
    req: {
      params: { ...DEFAULT_SAMPLING, temperature: 1 },
      outputIndex: 3,
      promptTokenIds: [],
      outputTokenIds: [],
    },
  },
  {
    label: "T=0.8 top-k 50 top-p 0.9 + 5 top logprobs",
    req: {
      params: { ...DEFAULT_SAMPLING, temperature: 0.8, topK: 50, topP: 0.9, numTopLogprobs: 5 },
      outputIndex: 3,
      promptTokenIds: [],
      outputTokenIds: [],
    },
  },
];

function timeBatch(
  sampler: RowSampler,
  logits: Float32Array,
  numRows: number,
  req: SampleRequest,
): number {
  const scratch = createSamplingScratch(VOCAB_SIZE);
  const start = performance.now();
  for (let r = 0; r < numRows; r++) {
    sampler(logits.subarray(r * VOCAB_SIZE, (r + 1) * VOCAB_SIZE), req, scratch);
  }
  return performance.now() - start;
}

const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;

console.log("| case | batch | TypeScript ms | native ms | speed-up |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const { label, req } of cases) {
  for (const numRows of batches) {
    const logits = new Float32Array(numRows * VOCAB_SIZE);
    for (let i = 0; i < logits.length; i++) logits[i] = (Math.random() - 0.5) * 8;
    const ts: number[] = [];
    const nat: number[] = [];
    for (let p = 0; p < numPasses + 1; p++) {
      const t = timeBatch(sampleRow, logits, numRows, req);
      const n = timeBatch(native, logits, numRows, req);
      if (p > 0) ts.push(t); // the first pass warms the JIT
      if (p > 0) nat.push(n);
    }
    const [t, n] = [median(ts), median(nat)];
    console.log(
      `| ${label} | ${numRows} | ${t.toFixed(2)} | ${n.toFixed(2)} | ${(t / n).toFixed(1)}× |`,
    );
  }
}
