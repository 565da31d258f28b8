import { PoolingType } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { makeApp } from "./helpers/app";
import { BOS, charId } from "./helpers/toy-codec";

// The fake router's "embedding" of a prompt is [promptLen, sum of ids, 0, -1].
const EMBED = { pooling: "mean", isNormalized: false, hiddenSize: 4 } as const;

describe("POST /v1/embeddings (in process)", () => {
  it("sends one pooling request per input and returns OpenAI's list", async () => {
    const { app, router } = makeApp({ embedding: EMBED });
    const res = await app.inject({
      method: "POST",
      url: "/v1/embeddings",
      payload: { model: "toy", input: ["ab", "c"] },
    });
    expect(res.statusCode).toBe(200);
    const ab = [BOS, charId("a"), charId("b")];
    expect(res.json()).toEqual({
      object: "list",
      data: [
        { object: "embedding", index: 0, embedding: [3, ab[0]! + ab[1]! + ab[2]!, 0, -1] },
        { object: "embedding", index: 1, embedding: [2, BOS + charId("c"), 0, -1] },
      ],
      model: "toy",
      usage: { prompt_tokens: 5, total_tokens: 5 },
    });
    expect(router.requests.map((r) => [r.pooling, r.maxTokens, r.n])).toEqual([
      [PoolingType.POOLING_TYPE_MEAN, 1, 1],
      [PoolingType.POOLING_TYPE_MEAN, 1, 1],
    ]);
    // A private cache salt per input: no hidden state is skipped as a cached prefix.
    expect(new Set(router.requests.map((r) => r.cacheSalt)).size).toBe(2);
  });

  it("normalises, pools last when configured, and encodes base64", async () => {
    const { app, router } = makeApp({
      embedding: { ...EMBED, pooling: "last", isNormalized: true },
    });
    const res = await app.inject({
      method: "POST",
      url: "/v1/embeddings",
      payload: { model: "toy", input: [3, 4], encoding_format: "base64" },
    });
    expect(router.requests[0]!.pooling).toBe(PoolingType.POOLING_TYPE_LAST);
    const buf = Buffer.from(res.json().data[0].embedding, "base64");
    const v = Array.from(new Float32Array(buf.buffer, buf.byteOffset, 4));
    const norm = Math.hypot(2, 7, 0, -1);
    expect(v.map((x) => x.toFixed(5))).toEqual([2, 7, 0, -1].map((x) => (x / norm).toFixed(5)));
  });

  it.each([
    [{ input: "x", dimensions: 3 }, "dimensions"],
    [{ input: [] }, "input"],
    [{ input: "" }, "input"],
    [{ input: [99999] }, "input"],
    [{ input: "x", encoding_format: "int8" }, "encoding_format"],
  ])("rejects %j naming %s", async (extra, param) => {
    const { app, router } = makeApp({ embedding: EMBED });
    const res = await app.inject({
      method: "POST",
      url: "/v1/embeddings",
      payload: { model: "toy", ...extra },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.param).toBe(param);
    expect(router.requests).toHaveLength(0);
  });

  it("is a 400 when the model is not served for embeddings", async () => {
    const { app } = makeApp();
    const res = await app.inject({
      method: "POST",
      url: "/v1/embeddings",
      payload: { model: "toy", input: "x" },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.message).toMatch(/KILN_TASK=embed/);
  });
});
