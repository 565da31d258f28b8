import { referenceHiddenStates } from "@kiln/kernels";
import { type LlamaConfig, loadModel, type WeightMap } from "@kiln/model";
import { STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

/**
 * /v1/embeddings on the real stack (KILN_TASK=embed) against the float64 reference forward
 * pass on stories260K. Mean pooling with a small token budget, so long inputs are prefilled
 * in several chunks whose sums the worker adds up.
 */
let stack: Stack;
let cfg: LlamaConfig;
let weights: WeightMap;
beforeAll(async () => {
  [stack, { config: cfg, weights }] = await Promise.all([
    startStack({
      KILN_TASK: "embed",
      KILN_POOLING: "mean",
      KILN_EMBED_NORMALIZE: "false",
      KILN_MAX_NUM_BATCHED_TOKENS: "16",
    }),
    loadModel(STORIES_DIR),
  ]);
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

/** Mean of the reference's final-normed hidden states over every prompt position. */
function referenceMean(ids: readonly number[]): number[] {
  const hidden = referenceHiddenStates(cfg, weights, ids);
  const dim = cfg.hiddenSize;
  return Array.from({ length: dim }, (_, h) => {
    let sum = 0;
    for (let t = 0; t < ids.length; t++) sum += hidden[t * dim + h]!;
    return sum / ids.length;
  });
}

function maxAbsError(got: readonly number[], want: readonly number[]): number {
  expect(got).toHaveLength(want.length);
  return Math.max(...got.map((x, i) => Math.abs(x - want[i]!)));
}

async function tokenize(prompt: string): Promise<number[]> {
  const origin = stack.baseURL.replace(/\/v1$/, "");
  const res = await fetch(`${origin}/tokenize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt }),
  });
  return ((await res.json()) as { tokens: number[] }).tokens;
}

describe("embeddings on the running stack", { timeout: 30_000 }, () => {
  it("match the float64 reference, mean-pooled over chunked prefills", async () => {
    const texts = [
      "Once upon a time",
      "Lily and Ben went to the park to play with a big red ball. They ran and laughed all day.",
    ];
    const res = await stack.client.embeddings.create({ model: MODEL, input: texts });
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    for (const [i, text] of texts.entries()) {
      const ids = await tokenize(text);
      if (i === 1) expect(ids.length).toBeGreaterThan(16); // several chunks
      const err = maxAbsError(res.data[i]!.embedding, referenceMean(ids));
      expect(err).toBeLessThan(1e-3);
    }
    const numTokens = (await tokenize(texts[0]!)).length + (await tokenize(texts[1]!)).length;
    expect(res.usage).toEqual({ prompt_tokens: numTokens, total_tokens: numTokens });
  });

  it("takes token ids and returns base64 float32 equal to the float output", async () => {
    const ids = [1, 403, 407, 261, 378];
    const floats = await stack.client.embeddings.create({
      model: MODEL,
      input: ids,
      encoding_format: "float",
    });
    expect(maxAbsError(floats.data[0]!.embedding, referenceMean(ids))).toBeLessThan(1e-3);
    const origin = stack.baseURL.replace(/\/v1$/, "");
    const raw = await fetch(`${origin}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, input: [ids], encoding_format: "base64" }),
    });
    const b64 = ((await raw.json()) as { data: { embedding: string }[] }).data[0]!.embedding;
    const buf = Buffer.from(b64, "base64");
    const decoded = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    expect(decoded).toEqual(floats.data[0]!.embedding);
  });

  it("accepts dimensions equal to the hidden size only", async () => {
    const ok = await stack.client.embeddings.create({
      model: MODEL,
      input: "Hi",
      dimensions: cfg.hiddenSize,
    });
    expect(ok.data[0]!.embedding).toHaveLength(cfg.hiddenSize);
    await expect(
      stack.client.embeddings.create({ model: MODEL, input: "Hi", dimensions: 8 }),
    ).rejects.toMatchObject({ status: 400 });
  });
});
