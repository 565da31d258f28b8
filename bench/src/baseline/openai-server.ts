import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { BadRequest, type GenerationRequest, parseGenerationRequest } from "./request";
import type { SequencePool } from "./sequence-pool";
import type { StepBarrier } from "./step-barrier";

/**
 * A minimal OpenAI-compatible HTTP server over llama.cpp, so the benchmark's load generator
 * drives llama.cpp exactly as it drives Kiln's gateway: POST /v1/completions and
 * /v1/chat/completions (streaming or not), GET /v1/models and /health. One sequence slot
 * per in-flight request; requests beyond the slots wait in FIFO order.
 */

export interface BaselineServerOptions {
  readonly model: LlamaModel;
  readonly pool: SequencePool;
  /** The id /v1/models lists and responses echo. */
  readonly modelName: string;
  /** When set, requests must send `Authorization: Bearer <apiKey>`. */
  readonly apiKey: string | null;
  /** Lockstep decoding (see step-barrier.ts); null leaves batching to node-llama-cpp. */
  readonly barrier: StepBarrier | null;
}

type FinishReason = "length" | "stop";

interface Generated {
  readonly numTokens: number;
  readonly finishReason: FinishReason;
}

/**
 * Runs one request on a pooled sequence, calling `onToken` once per generated token with the
 * text it completes ("" while a multi-byte character is still incomplete) and, on the last
 * token of a `max_tokens` run, the finish reason. Stops early when `isCancelled()` turns true
 * (client gone). Always returns the slot to the pool.
 */
async function generate(
  opts: BaselineServerOptions,
  req: GenerationRequest,
  onToken: (text: string, finish: FinishReason | null) => void,
  isCancelled: () => boolean,
): Promise<Generated> {
  const seq = await opts.pool.acquire();
  const tokens: Token[] = [];
  let numEmittedChars = 0;
  opts.barrier?.join();
  try {
    const evaluation = seq.evaluate([...req.promptIds], {
      temperature: req.temperature,
      topP: req.topP,
      topK: req.topK,
      ...(req.seed === undefined ? {} : { seed: req.seed }),
      yieldEogToken: req.ignoreEos,
    });
    for await (const token of evaluation) {
      tokens.push(token);
      // Detokenizing the whole output each time keeps multi-byte characters and SentencePiece's
      // leading-space rule right; at benchmark lengths it costs microseconds.
      const text = opts.model.detokenize(tokens);
      const isIncomplete = text.endsWith("\uFFFD");
      const isLast = tokens.length >= req.maxTokens;
      onToken(isIncomplete ? "" : text.slice(numEmittedChars), isLast ? "length" : null);
      if (!isIncomplete) numEmittedChars = text.length;
      if (isLast || isCancelled()) break;
      await opts.barrier?.arrive(sequenceRank(seq));
    }
  } finally {
    opts.barrier?.leave();
    await opts.pool.release(seq);
  }
  return {
    numTokens: tokens.length,
    finishReason: tokens.length >= req.maxTokens ? "length" : "stop",
  };
}

/**
 * The sequence's id in its context, which node-llama-cpp keeps internal (pinned 3.22); 0 when
 * it is not there, which only costs the ordering described in step-barrier.ts.
 */
function sequenceRank(seq: LlamaContextSequence): number {
  return (seq as unknown as { _sequenceId?: number })._sequenceId ?? 0;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string, param: string | null) {
  const type =
    status === 401
      ? "authentication_error"
      : status < 500
        ? "invalid_request_error"
        : "server_error";
  sendJson(res, status, { error: { message, type, param, code: null } });
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new BadRequest("the body is not valid JSON");
  }
}

/** The per-token SSE chunk for either endpoint. */
function chunkFor(
  req: GenerationRequest,
  id: string,
  created: number,
  text: string,
  finish: FinishReason | null,
  isFirst: boolean,
) {
  const base = { id, created, model: req.model };
  if (req.kind === "completion") {
    return {
      ...base,
      object: "text_completion",
      choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    };
  }
  const delta = isFirst ? { role: "assistant", content: text } : text ? { content: text } : {};
  return {
    ...base,
    object: "chat.completion.chunk",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  };
}

function usage(req: GenerationRequest, numTokens: number) {
  const numPrompt = req.promptIds.length;
  return {
    prompt_tokens: numPrompt,
    completion_tokens: numTokens,
    total_tokens: numPrompt + numTokens,
  };
}

async function serveStream(
  opts: BaselineServerOptions,
  req: GenerationRequest,
  res: ServerResponse,
) {
  const id = `${req.kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  const send = (data: unknown) => {
    if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
  };
  // As Kiln's gateway does: a chunk only for new text or the finish reason.
  let isFirst = true;
  let isFinishSent = false;
  const result = await generate(
    opts,
    req,
    (text, finish) => {
      if (!text && !finish) return;
      send(chunkFor(req, id, created, text, finish, isFirst));
      isFirst = false;
      isFinishSent = finish !== null;
    },
    () => res.destroyed,
  );
  if (!isFinishSent) send(chunkFor(req, id, created, "", result.finishReason, isFirst));
  if (req.includeUsage) {
    const object = req.kind === "chat" ? "chat.completion.chunk" : "text_completion";
    send({
      id,
      object,
      created,
      model: req.model,
      choices: [],
      usage: usage(req, result.numTokens),
    });
  }
  if (!res.destroyed) res.end("data: [DONE]\n\n");
}

async function serveWhole(
  opts: BaselineServerOptions,
  req: GenerationRequest,
  res: ServerResponse,
) {
  let text = "";
  const result = await generate(
    opts,
    req,
    (t) => {
      text += t;
    },
    () => res.destroyed,
  );
  const created = Math.floor(Date.now() / 1000);
  const choice =
    req.kind === "completion"
      ? { index: 0, text, logprobs: null, finish_reason: result.finishReason }
      : {
          index: 0,
          message: { role: "assistant", content: text },
          logprobs: null,
          finish_reason: result.finishReason,
        };
  sendJson(res, 200, {
    id: `${req.kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`,
    object: req.kind === "chat" ? "chat.completion" : "text_completion",
    created,
    model: req.model,
    choices: [choice],
    usage: usage(req, result.numTokens),
  });
}

async function route(opts: BaselineServerOptions, req: IncomingMessage, res: ServerResponse) {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method === "GET" && path === "/health") return sendJson(res, 200, { status: "ok" });
  if (opts.apiKey !== null && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
    return sendError(res, 401, "Invalid API key.", null);
  }
  if (req.method === "GET" && path === "/v1/models") {
    return sendJson(res, 200, {
      object: "list",
      data: [{ id: opts.modelName, object: "model", created: 0, owned_by: "llama.cpp" }],
    });
  }
  const kind =
    path === "/v1/completions" ? "completion" : path === "/v1/chat/completions" ? "chat" : null;
  if (req.method !== "POST" || kind === null)
    return sendError(res, 404, `No route ${req.method} ${path}.`, null);
  const parsed = parseGenerationRequest(opts.model, kind, await readBody(req));
  const withModel = { ...parsed, model: parsed.model || opts.modelName };
  await (withModel.stream ? serveStream(opts, withModel, res) : serveWhole(opts, withModel, res));
}

/** An http.Server (not yet listening) that answers OpenAI requests from llama.cpp. */
export function createBaselineServer(opts: BaselineServerOptions): Server {
  return createServer((req, res) => {
    route(opts, req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof BadRequest) sendError(res, 400, err.message, err.param);
      else sendError(res, 500, err instanceof Error ? err.message : String(err), null);
    });
  });
}
