import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STORIES_DIR } from "@kiln/test-support";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  f32Tensor,
  headerFor,
  makeTmpDir,
  type RawTensor,
  safetensorsBytes,
  writeSafetensors,
} from "../tests/helpers";
import { loadConfig } from "./config";
import { ModelError } from "./errors";
import type { Tensor } from "./types";
import { expectedWeightShapes, loadModel, loadWeights, validateWeights } from "./weights";

let dir = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await makeTmpDir());
});
afterEach(() => cleanup());

function u16Tensor(name: string, dtype: string, bits: number[]): RawTensor {
  return { name, dtype, shape: [bits.length], bytes: new Uint8Array(new Uint16Array(bits).buffer) };
}

async function expectCheckpointError(pattern: RegExp) {
  const err = await loadWeights(dir).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ModelError);
  expect((err as ModelError).code).toBe("INVALID_CHECKPOINT");
  expect((err as ModelError).message).toMatch(pattern);
}

describe("loadWeights on stories260K", () => {
  it("reads every tensor as f32 with its shape", async () => {
    const weights = await loadWeights(STORIES_DIR);
    expect(weights.get("model.embed_tokens.weight")?.shape).toEqual([512, 64]);
    expect(weights.get("model.layers.4.self_attn.k_proj.weight")?.shape).toEqual([32, 64]);
    expect(weights.get("model.layers.0.mlp.down_proj.weight")?.shape).toEqual([64, 172]);
    for (const t of weights.values()) {
      expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
    }
    const norm = weights.get("model.norm.weight")!.data;
    expect(norm.some((v) => v !== 0)).toBe(true);
  });

  it("loadModel validates and keeps only expected tensors", async () => {
    const { config, weights } = await loadModel(STORIES_DIR);
    expect(weights.size).toBe(expectedWeightShapes(config).size);
    expect(weights.has("lm_head.weight")).toBe(false); // tied
  });

  it("applies the filter", async () => {
    const weights = await loadWeights(STORIES_DIR, { filter: (n) => n.startsWith("model.norm") });
    expect([...weights.keys()]).toEqual(["model.norm.weight"]);
  });
});

describe("dtype conversion", () => {
  it("converts f16 exactly, including subnormals, infinities and NaN", async () => {
    // 1, -2, 0.5, 65504 (max), 2^-24 (min subnormal), -0, +inf, NaN, 0.333251953125
    const bits = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00, 0x3555];
    await writeSafetensors(join(dir, "model.safetensors"), [u16Tensor("h", "F16", bits)]);
    const data = (await loadWeights(dir)).get("h")!.data;
    expect([...data.slice(0, 7)]).toEqual([1, -2, 0.5, 65504, 2 ** -24, -0, Infinity]);
    expect(Object.is(data[5], -0)).toBe(true);
    expect(data[7]).toBeNaN();
    expect(data[8]).toBe(0.333251953125);
  });

  it("converts bf16 exactly", async () => {
    // 1, -2, 3.140625, 1e38-ish (0x7e96), smallest normal 2^-126, -inf
    const bits = [0x3f80, 0xc000, 0x4049, 0x7e96, 0x0080, 0xff80];
    await writeSafetensors(join(dir, "model.safetensors"), [u16Tensor("b", "BF16", bits)]);
    const data = (await loadWeights(dir)).get("b")!.data;
    const expected = bits.map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]);
    expect([...data]).toEqual(expected);
    expect(data[2]).toBe(3.140625);
  });

  it("converts half tensors larger than one conversion chunk", async () => {
    const numElems = 4_200_001; // > 8 MiB of f16, odd length
    const bits = new Uint16Array(numElems).map((_, i) => 0x3c00 + (i % 1000)); // [1, 2)
    const t: RawTensor = {
      name: "big",
      dtype: "F16",
      shape: [numElems],
      bytes: new Uint8Array(bits.buffer),
    };
    await writeSafetensors(join(dir, "model.safetensors"), [t]);
    const data = (await loadWeights(dir)).get("big")!.data;
    expect(data[numElems - 1]).toBe(1 + ((numElems - 1) % 1000) / 1024);
    expect(data[4_194_304]).toBe(1 + (4_194_304 % 1000) / 1024);
  });

  it("rejects a known but unsupported dtype when it is loaded", async () => {
    const t: RawTensor = { name: "ids", dtype: "I64", shape: [1], bytes: new Uint8Array(8) };
    await writeSafetensors(join(dir, "model.safetensors"), [t, f32Tensor("w", [1], [3])]);
    await expectCheckpointError(/ids.*I64/);
    const only = await loadWeights(dir, { filter: (n) => n === "w" });
    expect([...only.get("w")!.data]).toEqual([3]);
  });
});

describe("corrupt files", () => {
  const a = f32Tensor("a", [2], [1, 2]);
  const b = f32Tensor("b", [3], [3, 4, 5]);
  const path = () => join(dir, "model.safetensors");

  it("rejects a file shorter than the length prefix", async () => {
    await writeFile(path(), Buffer.from([1, 2, 3]));
    await expectCheckpointError(/too short/);
  });

  it("rejects a header length past EOF", async () => {
    const bytes = safetensorsBytes(headerFor([a]), [a.bytes]);
    bytes.writeBigUInt64LE(BigInt(bytes.length));
    await writeFile(path(), bytes);
    await expectCheckpointError(/header length .* past the end/);
  });

  it("rejects a truncated data region", async () => {
    const bytes = safetensorsBytes(headerFor([a, b]), [a.bytes, b.bytes]);
    await writeFile(path(), bytes.subarray(0, bytes.length - 4));
    await expectCheckpointError(/tensor b: .*truncated/);
  });

  it("rejects a header that is not JSON", async () => {
    const bytes = safetensorsBytes(headerFor([a]), [a.bytes]);
    bytes.write("#", 8);
    await writeFile(path(), bytes);
    await expectCheckpointError(/not valid JSON/);
  });

  it("rejects overlapping, reversed and mis-sized offsets", async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [3], data_offsets: [4, 16] },
        },
        /overlap/,
      ],
      [{ a: { dtype: "F32", shape: [0], data_offsets: [8, 0] } }, /reversed/],
      [{ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, /needs 12/],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [0] } }, /data_offsets/],
      [{ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, /shape/],
      [{ a: { dtype: "Q4_K", shape: [2], data_offsets: [0, 8] } }, /unknown dtype Q4_K/],
    ];
    for (const [header, pattern] of cases) {
      await writeFile(path(), safetensorsBytes(header, [new Uint8Array(20)]));
      await expectCheckpointError(pattern);
    }
  });

  it("reports a directory without a checkpoint as NOT_FOUND", async () => {
    await expect(loadWeights(dir)).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});

describe("sharded checkpoints", () => {
  const index = (map: Record<string, string>) =>
    writeFile(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: map }),
    );

  it("loads tensors from every shard", async () => {
    await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), [
      f32Tensor("a", [2], [1, 2]),
    ]);
    await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), [
      f32Tensor("b", [1], [7]),
    ]);
    await index({ a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" });
    const weights = await loadWeights(dir);
    expect([...weights.get("a")!.data]).toEqual([1, 2]);
    expect([...weights.get("b")!.data]).toEqual([7]);
  });

  it("names a missing shard", async () => {
    await writeSafetensors(join(dir, "s1.safetensors"), [f32Tensor("a", [1], [1])]);
    await index({ a: "s1.safetensors", b: "s2.safetensors" });
    await expectCheckpointError(/shard s2\.safetensors .* missing/);
  });

  it("names a tensor the index lists but no shard holds", async () => {
    await writeSafetensors(join(dir, "s1.safetensors"), [f32Tensor("a", [1], [1])]);
    await index({ a: "s1.safetensors", b: "s1.safetensors" });
    await expectCheckpointError(/puts b in s1\.safetensors/);
  });

  it("rejects shard names that leave the directory and duplicate tensors", async () => {
    await index({ a: "../evil.safetensors" });
    await expectCheckpointError(/not a shard file name/);
    await writeSafetensors(join(dir, "s1.safetensors"), [f32Tensor("a", [1], [1])]);
    await writeSafetensors(join(dir, "s2.safetensors"), [f32Tensor("a", [1], [1])]);
    await index({ a: "s1.safetensors", b: "s2.safetensors" });
    await expectCheckpointError(/two shards/);
  });
});

describe("validateWeights", () => {
  it("names the first missing or mis-shaped tensor", async () => {
    const config = await loadConfig(STORIES_DIR);
    const weights = new Map<string, Tensor>(await loadWeights(STORIES_DIR));
    expect(() => validateWeights(config, weights)).not.toThrow();
    expect(() => validateWeights({ ...config, tieWordEmbeddings: false }, weights)).toThrow(
      /missing tensor lm_head\.weight/,
    );
    expect(() => validateWeights({ ...config, attentionBias: true }, weights)).toThrow(
      /missing tensor model\.layers\.0\.self_attn\.q_proj\.bias/,
    );
    const k = weights.get("model.layers.2.self_attn.k_proj.weight")!;
    weights.set(k.name, { ...k, shape: [64, 32] });
    expect(() => validateWeights(config, weights)).toThrow(
      /model\.layers\.2\.self_attn\.k_proj\.weight has shape \[64, 32\].*\[32, 64\]/,
    );
  });
});
