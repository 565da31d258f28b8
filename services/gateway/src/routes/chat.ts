import type { FastifyInstance } from "fastify";
import type { GatewayDeps } from "../app";
import { type ChoiceDelta, generateChoices } from "../generation";
import { guardInput, guardOutput } from "../guards";
import { chatLogprobs } from "../logprobs";
import { resolveModel } from "../model-info";
import { buildPlan } from "../params";
import { type ChatBody, normalizeMessages, parseChatBody } from "../schemas/chat";
import {
  type ChatStructure,
  chatChoiceMessage,
  chatEncodeOptions,
  chatStructure,
} from "../structured/chat-structure";
import { type ToolCallParser, toolCallParser } from "../structured/tool-parsers";
import { ToolStream } from "../structured/tool-stream";
import { admitGeneration, checkTenantModel, tenantMaxTokens } from "../tenancy";
import { generationContext } from "./generation-context";
import {
  type CollectedChoice,
  checkStreamOptions,
  chunkUsage,
  collectChoices,
  type ResponseMeta,
  responseMeta,
  type StreamFormat,
  streamResponse,
  UsageCounter,
} from "./respond";

/** POST /v1/chat/completions: the chat template, then one router request with `n` choices. */
export function registerChatRoute(app: FastifyInstance, deps: GatewayDeps): void {
  app.post("/v1/chat/completions", async (request, reply) => {
    const body = parseChatBody(request.body);
    const adapter = resolveModel(body.model, deps.model, deps.lora);
    checkTenantModel(request, body.model);
    checkStreamOptions(body);
    const messages = normalizeMessages(body.messages);
    const parser = parserOf(deps);
    const structure = chatStructure(body, parser);
    await guardInput(deps.guard ?? null, messages);
    const promptIds = await deps.codec.encodeChat(
      messages,
      chatEncodeOptions(messages, structure, parser),
    );
    const plan = {
      ...buildPlan(body, promptIds, deps.model, {
        promptParam: "messages",
        defaultMaxTokens: null,
        maxTokens: tenantMaxTokens(request, body.max_completion_tokens ?? body.max_tokens ?? null),
        numTopLogprobs: body.logprobs ? (body.top_logprobs ?? 0) : null,
      }),
      adapter,
      grammar: structure.grammar,
    };
    const ticket = admitGeneration(request, reply, promptIds.length, plan.maxTokens * plan.n);
    const meta = responseMeta("chatcmpl", "chat.completion", adapter?.name ?? deps.model.id);
    const usage = new UsageCounter(promptIds.length);
    const { signal, done } = deps.inFlight.open(reply);
    try {
      const ctx = generationContext(deps, request, body, signal);
      const deltas = guardOutput(
        deps.guard ?? null,
        messages,
        generateChoices(ctx, plan, meta.id, 0),
      );
      if (body.stream) {
        await streamResponse(reply, deltas, chatStreamFormat(deps, body, meta, usage, structure));
        return;
      }
      const choices = await collectChoices(deltas, plan.n, signal);
      return {
        ...meta,
        choices: choices.map((c, index) => chatChoice(deps, body, c, index, usage, structure)),
        usage: usage.toJSON(),
      };
    } finally {
      done();
      ticket.settle(usage.numPromptTokens, usage.numCompletionTokens);
    }
  });
}

function parserOf(deps: GatewayDeps): ToolCallParser {
  return deps.toolCallParser ?? toolCallParser("hermes");
}

function numTopOf(body: ChatBody): number | null {
  return body.logprobs ? (body.top_logprobs ?? 0) : null;
}

function chatChoice(
  deps: GatewayDeps,
  body: ChatBody,
  choice: CollectedChoice,
  index: number,
  usage: UsageCounter,
  structure: ChatStructure,
) {
  for (const d of choice.deltas) usage.count(d);
  const numTop = numTopOf(body);
  const tokens = choice.deltas.flatMap((d) => d.tokens);
  const { message, finishReason } = chatChoiceMessage(
    choice.text,
    choice.finishReason,
    structure.tools,
  );
  return {
    index,
    message,
    logprobs:
      numTop === null ? null : { content: chatLogprobs(deps.codec, tokens, numTop), refusal: null },
    finish_reason: finishReason,
  };
}

function chatStreamFormat(
  deps: GatewayDeps,
  body: ChatBody,
  meta: ResponseMeta,
  usage: UsageCounter,
  structure: ChatStructure,
): StreamFormat {
  const toolStream = structure.tools ? new ToolStream(structure.tools) : null;
  const isUsageIncluded = body.stream_options?.include_usage === true;
  const numTop = numTopOf(body);
  const chunk = (choices: unknown[]) => ({
    ...meta,
    object: "chat.completion.chunk",
    choices,
    ...chunkUsage(body.stream_options, usage),
  });
  return {
    head: () =>
      Array.from({ length: body.n ?? 1 }, (_, index) =>
        chunk([
          { index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
        ]),
      ),
    chunks: (delta: ChoiceDelta) => {
      usage.count(delta);
      if (toolStream) {
        // Tool calls are held until they are complete; logprobs are not streamed with tools.
        return toolStream
          .push(delta.index, delta.text, delta.finishReason)
          .map((c) =>
            chunk([
              { index: delta.index, delta: c.delta, logprobs: null, finish_reason: c.finishReason },
            ]),
          );
      }
      const hasLogprobs = numTop !== null && delta.tokens.length > 0;
      if (!delta.text && !delta.finishReason && !hasLogprobs) return [];
      const logprobs = hasLogprobs
        ? { content: chatLogprobs(deps.codec, delta.tokens, numTop), refusal: null }
        : null;
      const choice = {
        index: delta.index,
        delta: delta.text ? { content: delta.text } : {},
        logprobs,
        finish_reason: delta.finishReason,
      };
      return [chunk([choice])];
    },
    tail: () =>
      isUsageIncluded
        ? [{ ...meta, object: "chat.completion.chunk", choices: [], usage: usage.toJSON() }]
        : [],
  };
}
