import type { FastifyInstance } from "fastify";
import type { GatewayDeps } from "../app";
import { type ChoiceDelta, generateChoices, mergeGenerators } from "../generation";
import { guardInput, guardOutput } from "../guards";
import {
  appendCompletionLogprobs,
  type CompletionLogprobs,
  CompletionLogprobsBuilder,
} from "../logprobs";
import { resolveModel } from "../model-info";
import { buildPlan, COMPLETIONS_DEFAULT_MAX_TOKENS, type GenerationPlan } from "../params";
import { type CompletionBody, parseCompletionBody, promptInputs } from "../schemas/completions";
import { completionGrammar } from "../structured/completion-grammar";
import { admitGeneration, checkTenantModel, tenantMaxTokens } from "../tenancy";
import { generationContext } from "./generation-context";
import {
  checkStreamOptions,
  chunkUsage,
  collectChoices,
  type ResponseMeta,
  responseMeta,
  type StreamFormat,
  streamResponse,
  UsageCounter,
} from "./respond";

/** One prompt of a (possibly batched) completion request, ready to run. */
interface PreparedPrompt {
  readonly plan: GenerationPlan;
  /** The prompt as text, for `echo`. */
  readonly text: string;
}

/**
 * POST /v1/completions: every prompt is its own router request with `n` choices; choice
 * `p * n + i` is sample i of prompt p (OpenAI's order).
 */
export function registerCompletionsRoute(app: FastifyInstance, deps: GatewayDeps): void {
  app.post("/v1/completions", async (request, reply) => {
    const body = parseCompletionBody(request.body);
    const adapter = resolveModel(body.model, deps.model, deps.lora);
    checkTenantModel(request, body.model);
    checkStreamOptions(body);
    const prompts: PreparedPrompt[] = [];
    const grammar = completionGrammar(body);
    for (const input of promptInputs(body.prompt)) {
      const ids = "ids" in input ? input.ids : await deps.codec.encodePrompt(input.text);
      const plan = {
        ...buildPlan(body, ids, deps.model, {
          promptParam: "prompt",
          defaultMaxTokens: COMPLETIONS_DEFAULT_MAX_TOKENS,
          maxTokens: tenantMaxTokens(
            request,
            body.max_tokens ?? null,
            COMPLETIONS_DEFAULT_MAX_TOKENS,
          ),
          numTopLogprobs: body.logprobs ?? null,
        }),
        adapter,
        grammar,
      };
      prompts.push({ plan, text: "text" in input ? input.text : deps.codec.decode(ids) });
    }
    const guardMessages = prompts.map((p) => ({ role: "user", content: p.text }));
    await guardInput(deps.guard ?? null, guardMessages);
    const n = body.n ?? 1;
    const meta = responseMeta("cmpl", "text_completion", adapter?.name ?? deps.model.id);
    const usage = new UsageCounter(prompts.reduce((sum, p) => sum + p.plan.promptIds.length, 0));
    const numReserved = prompts.reduce((sum, p) => sum + p.plan.maxTokens * p.plan.n, 0);
    const ticket = admitGeneration(request, reply, usage.numPromptTokens, numReserved);
    const { signal, done } = deps.inFlight.open(reply);
    try {
      const ctx = generationContext(deps, request, body, signal);
      const deltas = guardOutput(
        deps.guard ?? null,
        guardMessages,
        mergeGenerators(
          prompts.map((p, i) => generateChoices(ctx, p.plan, `${meta.id}-${i}`, i * n)),
        ),
      );
      const choiceState = new CompletionChoices(deps, body, prompts);
      if (body.stream) {
        await streamResponse(reply, deltas, streamFormat(body, meta, usage, choiceState));
        return;
      }
      const collected = await collectChoices(deltas, prompts.length * n, signal);
      const choices = collected.map((c, index) => {
        const logprobs = choiceState.echoLogprobs(index);
        let text = choiceState.echoText(index);
        for (const d of c.deltas) {
          usage.count(d);
          text += d.text;
          if (logprobs) appendCompletionLogprobs(logprobs, choiceState.logprobs(d)!);
        }
        return { index, text, logprobs, finish_reason: c.finishReason };
      });
      return { ...meta, choices, usage: usage.toJSON() };
    } finally {
      done();
      ticket.settle(usage.numPromptTokens, usage.numCompletionTokens);
    }
  });
}

/** Per-choice echo text and logprob offsets. */
class CompletionChoices {
  private readonly builders: (CompletionLogprobsBuilder | null)[];
  readonly numChoices: number;

  constructor(
    deps: GatewayDeps,
    private readonly body: CompletionBody,
    private readonly prompts: readonly PreparedPrompt[],
  ) {
    const numTop = body.logprobs;
    this.numChoices = prompts.length * (body.n ?? 1);
    this.builders = Array.from({ length: this.numChoices }, () =>
      numTop === null || numTop === undefined
        ? null
        : new CompletionLogprobsBuilder(deps.codec, numTop),
    );
  }

  private prompt(index: number): PreparedPrompt {
    return this.prompts[Math.floor(index / (this.body.n ?? 1))]!;
  }

  echoText(index: number): string {
    return this.body.echo ? this.prompt(index).text : "";
  }

  /** Logprobs of the echoed prompt (null entries), or empty ones; null without `logprobs`. */
  echoLogprobs(index: number): CompletionLogprobs | null {
    const builder = this.builders[index];
    if (!builder) return null;
    const out = this.body.echo
      ? builder.addPrompt(this.prompt(index).plan.promptIds)
      : builder.add([]);
    builder.seek(this.echoText(index).length);
    return out;
  }

  logprobs(delta: ChoiceDelta): CompletionLogprobs | null {
    return this.builders[delta.index]?.add(delta.tokens) ?? null;
  }
}

function streamFormat(
  body: CompletionBody,
  meta: ResponseMeta,
  usage: UsageCounter,
  choices: CompletionChoices,
): StreamFormat {
  const isUsageIncluded = body.stream_options?.include_usage === true;
  const isLogprobs = body.logprobs !== null && body.logprobs !== undefined;
  const chunk = (choice: unknown) => ({
    ...meta,
    object: "text_completion",
    choices: [choice],
    ...chunkUsage(body.stream_options, usage),
  });
  return {
    head: () => {
      if (!body.echo) return [];
      return Array.from({ length: choices.numChoices }, (_, index) =>
        chunk({
          index,
          text: choices.echoText(index),
          logprobs: choices.echoLogprobs(index),
          finish_reason: null,
        }),
      );
    },
    chunks: (delta) => {
      usage.count(delta);
      if (!delta.text && !delta.finishReason && !(isLogprobs && delta.tokens.length > 0)) return [];
      const logprobs = choices.logprobs(delta);
      return [
        chunk({
          index: delta.index,
          text: delta.text,
          logprobs,
          finish_reason: delta.finishReason,
        }),
      ];
    },
    tail: () =>
      isUsageIncluded
        ? [{ ...meta, object: "text_completion", choices: [], usage: usage.toJSON() }]
        : [],
  };
}
