import { type Check, type CheckContext, expect, requireSupported } from "../check";
import { requestJson } from "../http";
import { assertSchema } from "../validate";

interface Embeddings {
  data: { index: number; embedding: number[] | string }[];
}

async function embed(ctx: CheckContext, extra: Record<string, unknown>): Promise<Embeddings> {
  const reply = await requestJson(ctx.target, "POST", "/v1/embeddings", {
    model: ctx.target.model,
    input: "Once upon a time",
    ...extra,
  });
  requireSupported(reply, "embeddings");
  assertSchema("CreateEmbeddingResponse", reply.body);
  return reply.body as Embeddings;
}

export const EMBEDDING_CHECKS: readonly Check[] = [
  {
    id: "embeddings.float",
    endpoint: "POST /v1/embeddings",
    title: "float embeddings for a list of inputs",
    run: async (ctx) => {
      const body = await embed(ctx, { input: ["Once upon a time", "Lily had a dog"] });
      expect(body.data.length === 2, "expected 2 embeddings");
      expect(
        body.data.every((d) => Array.isArray(d.embedding)),
        "embeddings are not float arrays",
      );
    },
  },
  {
    id: "embeddings.token-ids",
    endpoint: "POST /v1/embeddings",
    title: "token-id inputs",
    run: async (ctx) => {
      const body = await embed(ctx, {
        input: [
          [1, 403, 407],
          [1, 261],
        ],
      });
      expect(body.data.length === 2, "expected 2 embeddings");
    },
  },
  {
    id: "embeddings.base64",
    endpoint: "POST /v1/embeddings",
    title: "encoding_format base64 decodes to the float embedding",
    run: async (ctx) => {
      const floats = (await embed(ctx, {})).data[0]!.embedding as number[];
      const b64 = (await embed(ctx, { encoding_format: "base64" })).data[0]!.embedding as string;
      const buf = Buffer.from(b64, "base64");
      const decoded = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      expect(decoded.length === floats.length, `${decoded.length} vs ${floats.length} dimensions`);
      expect(
        decoded.every((x, i) => Math.abs(x - floats[i]!) < 1e-5),
        "values differ",
      );
    },
  },
];
