import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type LoadedModel,
  loadModel,
  type QuantizeCheckpointOptions,
  writeQuantizedCheckpoint,
} from "@kiln/model";
import { type GoldenCase, loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../src/backend";
import { createCpuBackend } from "../src/cpu/cpu-backend";
import { CpuModelRunner } from "../src/cpu/model-runner";
import { referenceForward } from "../src/reference/llama-reference";
import { goldenNll, greedyGenerate } from "./helpers/step-driver";

// GPTQ and AWQ checkpoints through the worker's path (issue 20): createCpuBackend loads the
// checkpoint (dequantized, quantized.ts), and its greedy output is checked, token by token,
// against the float64 reference run over the same dequantized weights: each token must be
// the reference's argmax unless the reference's own top two are within 1e-4 (a tie no f32
// pass can be held to). How far the output moves from the f32 goldens is measured and printed
// (docs/benchmarks.md), not required: 4-bit weights change the model.

const cases: readonly GoldenCase[] = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const maxNewTokens = Math.max(...cases.map((c) => c.greedy_ids.length));
const blockSize = 16;
const numBlocks =
  cases.length * Math.ceil((Math.max(...prompts.map((p) => p.length)) + maxNewTokens) / blockSize);

const variants: [string, QuantizeCheckpointOptions][] = [
  // 8-bit codes pack every stories260K projection (its MLP has 172 channels).
  [
    "GPTQ 8-bit, groups of 32, act order",
    { method: "gptq", bits: 8, groupSize: 32, actOrder: true },
  ],
  // 4-bit words (8 codes) pack the attention projections only; the MLP stays dense.
  ["AWQ 4-bit, groups of 32", { method: "awq", groupSize: 32 }],
];

let tmpDir: string;
beforeAll(async () => {
  tmpDir = await mkdtemp(join(tmpdir(), "kiln-quantized-"));
  original = await loadModel(STORIES_DIR);
});
afterAll(async () => {
  if (tmpDir) await rm(tmpDir, { recursive: true, force: true });
});

let original: LoadedModel;
/** stories260K as published (f32), for the perplexity the quantization changes. */
function f32Runner(): CpuModelRunner {
  return new CpuModelRunner(original.config, original.weights, { numBlocks, blockSize });
}

describe.each(variants)("stories260K as %s", (label, opts) => {
  let dir: string;
  let model: LoadedModel;
  let backend: Backend;
  beforeAll(async () => {
    dir = join(tmpDir, label.replace(/\W+/g, "-"));
    await writeQuantizedCheckpoint(STORIES_DIR, dir, opts);
    model = await loadModel(dir);
    backend = await createCpuBackend({ modelDir: dir, numBlocks, blockSize, numThreads: 1 });
  });
  afterAll(async () => {
    await backend?.dispose();
  });

  it("generates what the float64 reference over the dequantized weights generates", async () => {
    const opts = { blockSize, numBlocks, maxNewTokens, isBatched: true, chunkLen: 7 };
    const got = await greedyGenerate(backend, prompts, opts);
    const vocab = model.config.vocabSize;
    const bad: string[] = [];
    let tokens = 0;
    let sameAsGolden = 0;
    got.forEach((ids, i) => {
      const seq = [...prompts[i]!, ...ids];
      const logits = referenceForward(model.config, model.weights, seq.slice(0, -1));
      ids.forEach((id, j) => {
        const row = logits.subarray((prompts[i]!.length - 1 + j) * vocab).subarray(0, vocab);
        let best = 0;
        for (let v = 1; v < vocab; v++) if (row[v]! > row[best]!) best = v;
        if (id !== best && row[best]! - row[id]! > 1e-4) {
          bad.push(`case ${i} token ${j}: ${id}, reference ${best} by ${row[best]! - row[id]!}`);
        }
        tokens++;
        if (id === cases[i]!.greedy_ids[j]) sameAsGolden++;
      });
    });
    const f32 = await goldenNll(f32Runner(), cases, blockSize);
    const quantized = await goldenNll(backend, cases, blockSize);
    console.log(
      `${label}: ${sameAsGolden} of ${tokens} greedy tokens equal the f32 goldens (the first divergence carries on); golden-text perplexity ${Math.exp(f32).toFixed(4)} → ${Math.exp(quantized).toFixed(4)}`,
    );
    expect(bad.slice(0, 5)).toEqual([]);
    expect(tokens).toBe(cases.length * maxNewTokens);
  });
});
