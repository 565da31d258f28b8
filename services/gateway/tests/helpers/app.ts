import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/app";
import { InFlight } from "../../src/in-flight";
import type { ModelInfo } from "../../src/model-info";
import type { ResponseStore } from "../../src/responses/store";
import type { EmbeddingConfig } from "../../src/routes/embeddings";
import { FakeRouter, type FakeRouterScript } from "./fake-router";
import { TOY_VOCAB_SIZE, toyCodec } from "./toy-codec";

export const TOY_MODEL: ModelInfo = {
  id: "toy",
  created: 1_700_000_000,
  contextLen: 64,
  vocabSize: TOY_VOCAB_SIZE,
  defaults: {},
};

export interface TestApp {
  readonly app: FastifyInstance;
  readonly router: FakeRouter;
  readonly inFlight: InFlight;
}

export function makeApp(
  opts: {
    script?: FakeRouterScript;
    apiKeys?: string[];
    bodyLimit?: number;
    requestTimeoutMs?: number;
    maxConcurrentRequests?: number;
    maxStreamBufferBytes?: number;
    model?: ModelInfo;
    responseStore?: ResponseStore;
    embedding?: EmbeddingConfig;
  } = {},
): TestApp {
  const router = new FakeRouter(opts.script);
  const inFlight = new InFlight(opts.requestTimeoutMs ?? null);
  const app = buildApp(
    {
      model: opts.model ?? TOY_MODEL,
      codec: toyCodec,
      router,
      apiKeys: opts.apiKeys ?? null,
      inFlight,
      ...(opts.responseStore ? { responseStore: opts.responseStore } : {}),
      ...(opts.embedding ? { embedding: opts.embedding } : {}),
    },
    {
      ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}),
      ...(opts.maxConcurrentRequests ? { maxConcurrentRequests: opts.maxConcurrentRequests } : {}),
      ...(opts.maxStreamBufferBytes ? { maxStreamBufferBytes: opts.maxStreamBufferBytes } : {}),
    },
  );
  return { app, router, inFlight };
}

/** The JSON payloads of an SSE body, `[DONE]` as the string "[DONE]". */
export function parseSse(body: string): unknown[] {
  return body
    .split("\n\n")
    .filter((block) => block.startsWith("data: "))
    .map((block) => {
      const data = block.slice("data: ".length);
      return data === "[DONE]" ? data : JSON.parse(data);
    });
}

/** The parts of a stream chunk the tests read (chat `delta` or completion `text`). */
export interface TestChunk {
  readonly id: string;
  readonly object: string;
  readonly usage?: unknown;
  readonly choices: {
    readonly index: number;
    readonly delta?: { readonly role?: string; readonly content?: string };
    readonly text?: string;
    readonly logprobs: unknown;
    readonly finish_reason: string | null;
  }[];
}

/** SSE payloads before `[DONE]` (asserting it is there). */
export function parseChunks(body: string): TestChunk[] {
  const events = parseSse(body);
  if (events.at(-1) !== "[DONE]") throw new Error(`stream did not end with [DONE]: ${body}`);
  return events.slice(0, -1) as TestChunk[];
}
