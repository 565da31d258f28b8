import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeTmpDir } from "../tests/helpers";
import { loadGenerationConfig } from "./generation-config";
import { DEFAULT_TOKENIZER_DIR, SHAPES, writeRandomModel } from "./random-model";
import { expectedWeightShapes, loadModel } from "./weights";

let dir = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await makeTmpDir());
});
afterEach(() => cleanup());

describe("writeRandomModel", () => {
  it("writes a tiny model that loadModel accepts", async () => {
    await writeRandomModel(join(dir, "a"), "tiny", { seed: 1 });
    const { config, weights } = await loadModel(join(dir, "a"));
    expect(config).toMatchObject({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2 });
    expect(config).toMatchObject({ intermediateSize: 128, vocabSize: 32000, headDim: 16 });
    expect(weights.size).toBe(expectedWeightShapes(config).size);
    expect([...weights.get("model.norm.weight")!.data].every((v) => v === 1)).toBe(true);
    const q = weights.get("model.layers.1.self_attn.q_proj.weight")!.data;
    const bound = 1 / Math.sqrt(64);
    expect(q.every((v) => Math.abs(v) <= bound)).toBe(true);
    const meanSq = q.reduce((a, v) => a + v * v, 0) / q.length;
    expect(meanSq).toBeCloseTo(bound ** 2 / 3, 4); // uniform variance = bound²/3
    expect(await loadGenerationConfig(join(dir, "a"))).toEqual({ bosTokenId: 1, eosTokenIds: [2] });
    const tokenizer = await readFile(join(dir, "a/tokenizer.json"));
    expect(tokenizer.equals(await readFile(join(DEFAULT_TOKENIZER_DIR, "tokenizer.json")))).toBe(
      true,
    );
  });

  it("is deterministic per seed and differs across seeds", async () => {
    await writeRandomModel(join(dir, "a"), "tiny", { seed: 7 });
    await writeRandomModel(join(dir, "b"), SHAPES.tiny, { seed: 7 });
    await writeRandomModel(join(dir, "c"), "tiny", { seed: 8 });
    const [a, b, c] = await Promise.all(
      ["a", "b", "c"].map((d) => readFile(join(dir, d, "model.safetensors"))),
    );
    expect(a!.equals(b!)).toBe(true);
    expect(a!.equals(c!)).toBe(false);
    // Rewriting into an existing directory works (copied tokenizer files stay writable).
    await writeRandomModel(join(dir, "a"), "tiny", { seed: 7 });
    expect((await stat(join(dir, "a/model.safetensors"))).size).toBe(a!.length);
  });

  it("keeps the data region 8-byte aligned", async () => {
    await writeRandomModel(dir, "tiny", { seed: 0, tokenizerDir: null });
    const bytes = await readFile(join(dir, "model.safetensors"));
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
  });

  it("refuses a tokenizer directory without tokenizer.json", async () => {
    const bad = writeRandomModel(dir, "tiny", { seed: 0, tokenizerDir: join(dir, "none") });
    await expect(bad).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});
