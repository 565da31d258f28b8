import { open } from "node:fs/promises";
import { join } from "node:path";
import { STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { loadConfig } from "./config";
import { readSafetensorsHeader } from "./safetensors";
import { loadModelShard, readTensorRegion } from "./shard-loader";
import { planTensorShard, shardRegion, vocabSlice } from "./tensor-parallel";
import type { LlamaConfig } from "./types";
import { loadModel } from "./weights";

const base = (o: Partial<LlamaConfig>) =>
  ({
    hiddenSize: 64,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 8,
    intermediateSize: 172,
    vocabSize: 512,
    tieWordEmbeddings: true,
    ...o,
  }) as LlamaConfig;

describe("planTensorShard", () => {
  it("splits heads, KV heads and FFN columns by rank", () => {
    const plan = planTensorShard(base({}), 1, 2);
    expect(plan.config).toMatchObject({ numHeads: 4, numKvHeads: 2, intermediateSize: 86 });
    expect(plan).toMatchObject({ headStart: 4, kvHeadStart: 2, ffnStart: 86, hasLmHead: false });
    expect(plan.lmHeadRows).toEqual({ start: 256, count: 256 });
  });

  it("replicates KV heads that do not divide by T (each rank holds its query heads' one)", () => {
    const cfg = base({ numKvHeads: 2, intermediateSize: 64 });
    const kvStarts = [0, 1, 2, 3].map((r) => planTensorShard(cfg, r, 4).kvHeadStart);
    expect(kvStarts).toEqual([0, 0, 1, 1]);
    expect(planTensorShard(cfg, 3, 4).config.numKvHeads).toBe(1);
  });

  it("refuses heads that cannot be split, naming why", () => {
    expect(() => planTensorShard(base({}), 0, 3)).toThrow(/8 attention heads do not split over 3/);
    expect(() => planTensorShard(base({ numHeads: 12, numKvHeads: 3 }), 0, 4)).toThrow(
      /3 KV heads neither split over nor replicate onto 4 ranks/,
    );
    expect(() => planTensorShard(base({ intermediateSize: 171 }), 0, 2)).toThrow(/intermediate/);
  });

  it("splits lm_head by vocabulary rows, read from lm_head.weight only when untied", () => {
    const plan1 = planTensorShard(base({ tieWordEmbeddings: false }), 1, 2);
    expect(plan1.hasLmHead).toBe(true);
    expect(shardRegion(plan1, "lm_head.weight", [512, 64])).toMatchObject({
      rowStart: 256,
      numRows: 256,
      numCols: 64,
    });
    expect(shardRegion(planTensorShard(base({}), 1, 2), "lm_head.weight", [512, 64])).toBeNull();
    // Uneven vocabularies: ⌈V / T⌉ rows a rank, the last one fewer, together every row once.
    const slices = [0, 1, 2, 3].map((r) => vocabSlice(32001, r, 4));
    expect(slices.map((s) => s.count)).toEqual([8001, 8001, 8001, 7998]);
    expect(slices.reduce((n, s) => n + s.count, 0)).toBe(32001);
    expect(slices[3]!.start).toBe(3 * 8001);
  });
});

describe("loadModelShard (stories260K)", () => {
  it("holds exactly the rows and columns of its rank, read as byte ranges", async () => {
    const full = await loadModel(STORIES_DIR);
    const { plan, weights } = await loadModelShard(STORIES_DIR, 1, 2);
    const hd = full.config.headDim;
    const q = full.weights.get("model.layers.2.self_attn.q_proj.weight")!;
    const qShard = weights.get("model.layers.2.self_attn.q_proj.weight")!;
    const dim = full.config.hiddenSize;
    expect(qShard.shape).toEqual([4 * hd, dim]);
    expect(qShard.data).toEqual(q.data.subarray(4 * hd * dim, 8 * hd * dim));
    const o = full.weights.get("model.layers.2.self_attn.o_proj.weight")!;
    const oShard = weights.get("model.layers.2.self_attn.o_proj.weight")!;
    expect(oShard.shape).toEqual([dim, 4 * hd]);
    for (const row of [0, 17, dim - 1]) {
      const want = o.data.subarray(row * 8 * hd + 4 * hd, row * 8 * hd + 8 * hd);
      expect(oShard.data.subarray(row * 4 * hd, (row + 1) * 4 * hd)).toEqual(want);
    }
    expect(plan.config.numKvHeads).toBe(2);
    expect(weights.get("model.embed_tokens.weight")!.data).toEqual(
      full.weights.get("model.embed_tokens.weight")!.data,
    );
  });

  it("reads only the region's bytes, never the whole tensor", async () => {
    const path = join(STORIES_DIR, "model.safetensors");
    const handle = await open(path, "r");
    try {
      const { entries } = await readSafetensorsHeader(handle, (await handle.stat()).size, path);
      const entry = entries.find((e) => e.name === "model.layers.0.mlp.down_proj.weight")!;
      let numBytesRead = 0;
      const counting = new Proxy(handle, {
        get(target, prop) {
          if (prop !== "read") return Reflect.get(target, prop);
          return (buf: Uint8Array, off: number, len: number, pos: number) => {
            numBytesRead += len;
            return target.read(buf, off, len, pos);
          };
        },
      });
      const config = await loadConfig(STORIES_DIR);
      const region = shardRegion(planTensorShard(config, 0, 4), entry.name, entry.shape)!;
      const data = await readTensorRegion(counting, entry, region, path);
      expect(data.length).toBe((entry.shape[0]! * entry.shape[1]!) / 4);
      expect(numBytesRead).toBe(data.length * 4);
    } finally {
      await handle.close();
    }
  });
});
