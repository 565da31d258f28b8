import { KilnError } from "@kiln/proto";
import type { FastifyReply } from "fastify";
import type { GatewayDeps } from "../app";
import { toKilnError } from "../errors";
import { type ChoiceDelta, generateChoices } from "../generation";
import { recordStreamError } from "../observability";
import { SseWriter } from "../sse";
import type { ChatMessage } from "../text-codec";
import { ResponseBuilder, type ResponseEvent, type ResponseObject } from "./builder";
import type { PreparedResponse } from "./prepare";
import type { ResponseStore } from "./store";
import { formatToolCall } from "./tool-calls";

function deltasOf(deps: GatewayDeps, prepared: PreparedResponse, signal: AbortSignal) {
  const ctx = { router: deps.router, codec: deps.codec, signal };
  return generateChoices(ctx, prepared.plan, prepared.response.id, 0);
}

function builderOf(prepared: PreparedResponse, emit?: (event: ResponseEvent) => void) {
  const numPromptTokens = prepared.plan.promptIds.length;
  return new ResponseBuilder(prepared.response, numPromptTokens, prepared.toolNames, emit);
}

/** Runs to the end and returns the Response (the non-streamed POST). */
export async function runToEnd(
  deps: GatewayDeps,
  store: ResponseStore,
  prepared: PreparedResponse,
  signal: AbortSignal,
): Promise<ResponseObject> {
  const builder = builderOf(prepared);
  builder.start();
  for await (const delta of deltasOf(deps, prepared, signal)) builder.onDelta(delta);
  if (signal.aborted) throw new KilnError("CANCELLED", "The client closed the request.");
  const response = builder.finish();
  await save(store, prepared, response);
  return response;
}

/**
 * Streams the typed events as SSE (`event: <type>`, no `[DONE]`). Like the chat stream it waits
 * for the first delta before the 200, so a router refusal keeps its own status; a later error
 * becomes an `error` event and `response.failed`.
 */
export async function runStreamed(
  deps: GatewayDeps,
  store: ResponseStore,
  prepared: PreparedResponse,
  reply: FastifyReply,
  signal: AbortSignal,
): Promise<void> {
  const deltas = deltasOf(deps, prepared, signal);
  let next = await deltas.next();
  reply.hijack();
  const sse = new SseWriter(reply.raw, reply.server.kilnStreamLimits);
  sse.start();
  const pending: ResponseEvent[] = [];
  const builder = builderOf(prepared, (event) => pending.push(event));
  const flush = async () => {
    for (const event of pending.splice(0)) await sse.sendEvent(event.type, event);
  };
  try {
    builder.start();
    while (!next.done) {
      builder.onDelta(next.value);
      await flush();
      if (sse.isClosed) return;
      next = await deltas.next();
    }
    if (signal.aborted) return;
    await save(store, prepared, builder.finish());
  } catch (err) {
    const kilnError = toKilnError(err);
    if (kilnError.code === "INTERNAL") reply.log.error({ err }, "stream failed");
    recordStreamError(reply.request, kilnError.code);
    await save(store, prepared, builder.fail("failed", kilnError));
  } finally {
    void deltas.return(undefined).catch(() => {});
    await flush();
  }
  sse.end(false);
}

/** A background response: its abort handle and the promise of its end. */
export interface BackgroundRun {
  readonly abort: () => void;
  readonly finished: Promise<void>;
}

/**
 * Starts a background response (stored right away as `queued`) and returns at once; the
 * stored record is updated when it ends: completed, incomplete, cancelled or failed.
 */
export async function runInBackground(
  deps: GatewayDeps,
  store: ResponseStore,
  prepared: PreparedResponse,
): Promise<BackgroundRun> {
  await save(store, prepared, prepared.response);
  const { signal, abort, done } = deps.inFlight.openDetached();
  const builder = builderOf(prepared);
  const run = async () => {
    builder.start();
    try {
      await save(store, prepared, prepared.response);
      const deltas: AsyncIterable<ChoiceDelta> = deltasOf(deps, prepared, signal);
      for await (const delta of deltas) builder.onDelta(delta);
      if (signal.aborted) {
        const reason = signal.reason;
        const err = reason instanceof KilnError ? reason : undefined;
        await save(store, prepared, builder.fail(err ? "failed" : "cancelled", err));
        return;
      }
      await save(store, prepared, builder.finish());
    } catch (err) {
      await save(store, prepared, builder.fail("failed", toKilnError(err)));
    } finally {
      done();
    }
  };
  return { abort: () => abort(), finished: run() };
}

async function save(store: ResponseStore, prepared: PreparedResponse, response: ResponseObject) {
  if (!prepared.isStored) return;
  const history = [...prepared.history, ...outputMessages(response)];
  await store.put({
    response: structuredClone(response),
    inputItems: prepared.inputItems,
    history,
  });
}

/** The output items as one assistant turn, tool calls in the documented text format. */
function outputMessages(response: ResponseObject): ChatMessage[] {
  const parts = response.output.map((raw) => {
    const item = raw as {
      type: string;
      name?: string;
      arguments?: string;
      content?: { text?: string }[];
    };
    if (item.type === "function_call") {
      return formatToolCall({ name: item.name ?? "", arguments: item.arguments ?? "{}" });
    }
    return (item.content ?? []).map((p) => p.text ?? "").join("");
  });
  return parts.length > 0 ? [{ role: "assistant", content: parts.join("\n") }] : [];
}
