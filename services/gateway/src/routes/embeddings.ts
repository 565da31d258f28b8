import { randomBytes } from "node:crypto";
import { GenerateRequest, KilnError, PoolingType, SamplingParams } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import type { GatewayDeps } from "../app";
import { checkModel } from "../model-info";
import { type EmbeddingsBody, embeddingInputs, parseEmbeddingsBody } from "../schemas/embeddings";

/** How the gateway serves /v1/embeddings (KILN_TASK=embed); see docs/api.md. */
export interface EmbeddingConfig {
  readonly pooling: "last" | "mean";
  /** L2-normalise every vector (vLLM's default for embedding models). */
  readonly isNormalized: boolean;
  /** The model's hidden size: the only `dimensions` it can return. */
  readonly hiddenSize: number;
}

/**
 * POST /v1/embeddings. Each input is its own router request with `pooling` set: a prefill-only
 * sequence through the same scheduler as generation (max_tokens 1, a private cache salt so its
 * hidden states are all computed, never read from another request's prefix blocks), whose
 * token event carries the pooled final hidden state.
 */
export function registerEmbeddingsRoute(app: FastifyInstance, deps: GatewayDeps): void {
  app.post("/v1/embeddings", async (request, reply) => {
    const body = parseEmbeddingsBody(request.body);
    checkModel(body.model, deps.model);
    const config = deps.embedding;
    if (!config) {
      throw new KilnError(
        "INVALID_REQUEST",
        `The model \`${deps.model.id}\` is not served for embeddings: start Kiln with KILN_TASK=embed.`,
        "model",
      );
    }
    checkDimensions(body, config);
    const prompts = await encodeInputs(deps, body);
    const { signal, done } = deps.inFlight.open(reply);
    try {
      const id = `embd-${randomBytes(12).toString("hex")}`;
      const vectors = await Promise.all(
        prompts.map((ids, i) => embedOne(deps, config, ids, `${id}-${i}`, signal)),
      );
      const numTokens = prompts.reduce((n, p) => n + p.length, 0);
      return {
        object: "list",
        data: vectors.map((v, index) => ({
          object: "embedding",
          index,
          embedding: body.encoding_format === "base64" ? toBase64(v) : Array.from(v),
        })),
        model: deps.model.id,
        usage: { prompt_tokens: numTokens, total_tokens: numTokens },
      };
    } finally {
      done();
    }
  });
}

function checkDimensions(body: EmbeddingsBody, config: EmbeddingConfig): void {
  const dims = body.dimensions;
  if (dims !== null && dims !== undefined && dims !== config.hiddenSize) {
    throw new KilnError(
      "INVALID_REQUEST",
      `This model does not support 'dimensions' other than its hidden size (${config.hiddenSize}).`,
      "dimensions",
    );
  }
}

async function encodeInputs(deps: GatewayDeps, body: EmbeddingsBody): Promise<number[][]> {
  const out: number[][] = [];
  for (const input of embeddingInputs(body.input)) {
    const ids = "ids" in input ? [...input.ids] : await deps.codec.encodePrompt(input.text);
    const bad = ids.find((id) => id >= deps.model.vocabSize);
    if (bad !== undefined) {
      throw new KilnError(
        "INVALID_REQUEST",
        `Invalid value for 'input': token id ${bad} is out of range (vocabulary size ${deps.model.vocabSize}).`,
        "input",
      );
    }
    if (ids.length >= deps.model.contextLen) {
      throw new KilnError(
        "INVALID_REQUEST",
        `This model's maximum context length is ${deps.model.contextLen} tokens. However, an input has ${ids.length} tokens.`,
        "input",
      );
    }
    out.push(ids);
  }
  return out;
}

async function embedOne(
  deps: GatewayDeps,
  config: EmbeddingConfig,
  promptTokenIds: number[],
  requestId: string,
  signal: AbortSignal,
): Promise<Float32Array> {
  // Unset fields are proto defaults: base model, default tenant (embeddings get no fair-queue
  // share of their own yet), interactive priority.
  const request = GenerateRequest.fromPartial({
    requestId,
    promptTokenIds,
    sampling: SamplingParams.fromPartial({}),
    maxTokens: 1,
    ignoreEos: true,
    // A private salt: no prompt token is skipped as a cached prefix, so pooling sees them all.
    cacheSalt: `embed-${requestId}`,
    n: 1,
    pooling:
      config.pooling === "mean" ? PoolingType.POOLING_TYPE_MEAN : PoolingType.POOLING_TYPE_LAST,
  });
  const events = deps.router.generate(request, signal);
  let vector: Float32Array | null = null;
  for await (const event of events) {
    const embedding = event.token?.tokens[0]?.embedding;
    if (embedding && embedding.length > 0) vector = Float32Array.from(embedding);
  }
  if (signal.aborted) throw new KilnError("CANCELLED", "The client closed the request.");
  if (!vector) throw new KilnError("INTERNAL", "The worker returned no embedding.");
  return config.isNormalized ? normalize(vector) : vector;
}

function normalize(v: Float32Array): Float32Array {
  let ss = 0;
  for (const x of v) ss += x * x;
  const norm = Math.sqrt(ss);
  return norm > 0 ? v.map((x) => x / norm) : v;
}

/** Little-endian float32 bytes as base64 (OpenAI's `encoding_format: "base64"`). */
function toBase64(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
}
