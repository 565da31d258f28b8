import { describe, expect, it } from "vitest";
import { parseWorkerOptions } from "./options";
import { numBlocksPerRank } from "./tensor-parallel";

const CONFIG = {
  numLayers: 2,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 8,
  intermediateSize: 64,
  tieWordEmbeddings: true,
} as Parameters<typeof numBlocksPerRank>[0];

describe("tensor-parallel worker options", () => {
  it("reads the rank, size, group and timeout (flags over environment)", () => {
    const env = { KILN_MODEL: "m", KILN_TENSOR_PARALLEL_SIZE: "4", KILN_TP_RANK: "3" };
    const opts = parseWorkerOptions(["--tp-group", "g", "--tp-timeout-ms", "500"], env);
    expect(opts).toMatchObject({
      tensorParallelSize: 4,
      tpRank: 3,
      tpGroup: "g",
      tpTimeoutMs: 500,
    });
    expect(parseWorkerOptions([], { KILN_MODEL: "m" })).toMatchObject({
      tensorParallelSize: 1,
      tpRank: 0,
      tpGroup: "replica-0",
    });
    expect(() => parseWorkerOptions(["--tp-rank", "2"], { KILN_MODEL: "m" })).toThrow(/--tp-rank/);
  });

  it("gives every rank the same number of blocks from its own KV heads", () => {
    const env = { KILN_MODEL: "m", KILN_KV_CACHE_MEMORY: "1MiB", KILN_BLOCK_SIZE: "16" };
    const single = numBlocksPerRank(CONFIG, parseWorkerOptions([], env));
    const ranks = [0, 1].map((r) =>
      numBlocksPerRank(
        CONFIG,
        parseWorkerOptions(["--tensor-parallel-size", "2", "--tp-rank", String(r)], env),
      ),
    );
    expect(ranks).toEqual([2 * single, 2 * single]);
    // A bf16 KV cache fits twice the blocks in the same memory.
    const bf16 = numBlocksPerRank(CONFIG, parseWorkerOptions(["--kv-cache-dtype", "bf16"], env));
    expect(bf16).toBe(2 * single);
    expect(() =>
      numBlocksPerRank(CONFIG, parseWorkerOptions(["--tensor-parallel-size", "3"], env)),
    ).toThrow(/8 attention heads do not split over 3 ranks/);
  });
});
