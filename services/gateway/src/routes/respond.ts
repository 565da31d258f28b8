import { randomBytes } from "node:crypto";
import { KilnError } from "@kiln/proto";
import type { FastifyReply } from "fastify";
import { errorBody, toKilnError } from "../errors";
import type { ChoiceDelta } from "../generation";
import { recordStreamError } from "../observability";
import { SseWriter } from "../sse";
import { recordTenantStreamError } from "../tenancy";

/** How one endpoint turns choice deltas into stream chunks. */
export interface StreamFormat {
  /** Chunks sent before any generated text (chat's role chunks, echoed prompts). */
  head(): unknown[];
  /** Chunks for one delta; may be empty. Also counts usage. */
  chunks(delta: ChoiceDelta): unknown[];
  /** Chunks after every choice finished (the usage chunk with `include_usage`). */
  tail(): unknown[];
}

/** Tokens per prompt and in total, counted as deltas go by. */
export class UsageCounter {
  numCompletionTokens = 0;
  /** Prompt tokens the router found in the prefix cache, summed over the request's prompts. */
  numCachedTokens = 0;
  constructor(readonly numPromptTokens: number) {}

  count(delta: ChoiceDelta): void {
    this.numCompletionTokens += delta.tokens.length;
    this.numCachedTokens += delta.numCachedTokens ?? 0;
  }

  toJSON() {
    return {
      prompt_tokens: this.numPromptTokens,
      completion_tokens: this.numCompletionTokens,
      total_tokens: this.numPromptTokens + this.numCompletionTokens,
      prompt_tokens_details: { cached_tokens: this.numCachedTokens },
    };
  }
}

/**
 * The `usage` field of a stream chunk: the running totals with vLLM's
 * `stream_options.continuous_usage_stats`, null with `include_usage` alone, absent otherwise.
 */
export function chunkUsage(
  streamOptions: StreamOptions | null | undefined,
  usage: UsageCounter,
): { usage?: ReturnType<UsageCounter["toJSON"]> | null } {
  if (streamOptions?.continuous_usage_stats) return { usage: usage.toJSON() };
  return streamOptions?.include_usage ? { usage: null } : {};
}

/** The wire's `stream_options`. */
export interface StreamOptions {
  readonly include_usage?: boolean | null;
  readonly continuous_usage_stats?: boolean | null;
}

/** One choice's deltas folded together, for non-streamed responses. */
export interface CollectedChoice {
  text: string;
  readonly deltas: ChoiceDelta[];
  finishReason: ChoiceDelta["finishReason"];
}

/** Drains `deltas` into `numChoices` choices. Throws CANCELLED when `signal` aborts first. */
export async function collectChoices(
  deltas: AsyncIterable<ChoiceDelta>,
  numChoices: number,
  signal: AbortSignal,
): Promise<CollectedChoice[]> {
  const choices: CollectedChoice[] = Array.from({ length: numChoices }, () => ({
    text: "",
    deltas: [],
    finishReason: null,
  }));
  for await (const delta of deltas) {
    const choice = choices[delta.index]!;
    choice.text += delta.text;
    choice.deltas.push(delta);
    if (delta.finishReason) choice.finishReason = delta.finishReason;
  }
  if (signal.aborted) throw new KilnError("CANCELLED", "The client closed the request.");
  return choices;
}

/**
 * Streams `deltas` as SSE. Waits for the first delta before committing to a 200, so a router
 * refusal (429 queue full, 503) still gets its own status; errors after that become an
 * `data: {"error": ...}` event followed by the end of the stream.
 */
export async function streamResponse(
  reply: FastifyReply,
  deltas: AsyncGenerator<ChoiceDelta>,
  format: StreamFormat,
): Promise<void> {
  let next = await deltas.next();
  reply.hijack();
  const sse = new SseWriter(reply.raw, reply.server.kilnStreamLimits);
  sse.start(reply.getHeaders());
  try {
    for (const chunk of format.head()) await sse.send(chunk);
    while (!next.done) {
      for (const chunk of format.chunks(next.value)) await sse.send(chunk);
      if (sse.isClosed) return;
      next = await deltas.next();
    }
    for (const chunk of format.tail()) await sse.send(chunk);
  } catch (err) {
    const kilnError = toKilnError(err);
    if (kilnError.code === "INTERNAL") reply.log.error({ err }, "stream failed");
    recordStreamError(reply.request, kilnError.code);
    recordTenantStreamError(reply.request, kilnError.code);
    await sse.send(errorBody(kilnError));
  } finally {
    void deltas.return(undefined).catch(() => {});
  }
  sse.end();
}

/** OpenAI rejects `stream_options` on non-streamed requests; so does Kiln. */
export function checkStreamOptions(body: { stream?: boolean | null; stream_options?: unknown }) {
  if (!body.stream && body.stream_options !== null && body.stream_options !== undefined) {
    throw new KilnError(
      "INVALID_REQUEST",
      "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      "stream_options",
    );
  }
}

/** The fields every response and chunk starts with, in OpenAI's order. */
export interface ResponseMeta {
  readonly id: string;
  readonly object: string;
  readonly created: number;
  readonly model: string;
}

/** A new id such as `chatcmpl-3f2a...` (24 hex digits), created now. */
export function responseMeta(prefix: string, object: string, model: string): ResponseMeta {
  const id = `${prefix}-${randomBytes(12).toString("hex")}`;
  return { id, object, created: Math.floor(Date.now() / 1000), model };
}
