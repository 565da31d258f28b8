import {
  type FinishedEvent,
  KilnError,
  PoolingType,
  PriorityClass,
  type SampledToken,
  type TokenEvent,
} from "@kiln/proto";
import type { GenerationPlan } from "./params";
import type { RouterPort } from "./router-port";
import { StopMatcher } from "./stop-strings";
import type { Detokenizer, TextCodec } from "./text-codec";

export type FinishReason = "stop" | "length" | "abort" | "content_filter";

/** A piece of one choice: new text, the tokens consumed for it, and whether it ended. */
export interface ChoiceDelta {
  /** Index of the choice in the response (prompt offset applied). */
  readonly index: number;
  /** Text safe to show: detokenized, stop strings removed. May be empty. */
  readonly text: string;
  /** Tokens this delta consumed, for logprobs and usage (the stop-completing token included). */
  readonly tokens: readonly SampledToken[];
  readonly finishReason: FinishReason | null;
  /** On the request's last finish: prompt tokens served from the prefix cache. */
  readonly numCachedTokens?: number;
}

interface ChoiceState {
  readonly detok: Detokenizer;
  readonly stops: StopMatcher;
  isFinished: boolean;
}

export interface GenerationContext {
  readonly router: RouterPort;
  readonly codec: TextCodec;
  readonly signal: AbortSignal;
  /** Who asks (fair queuing) and the prefix-cache salt; absent: the default tenant, no salt. */
  readonly tenancy?: {
    readonly tenant: string;
    readonly tenantWeight: number;
    readonly cacheSalt: string;
  };
  /** Batch lines run behind interactive requests; default interactive. */
  readonly priorityClass?: PriorityClass;
}

/**
 * Runs one prompt through the router and yields its choices' deltas (choice `i` of this plan
 * is `indexOffset + i`). Ends after every choice has finished; leaving early (return/throw)
 * cancels the router call. Throws the router's KilnError.
 */
export async function* generateChoices(
  ctx: GenerationContext,
  plan: GenerationPlan,
  requestId: string,
  indexOffset: number,
): AsyncGenerator<ChoiceDelta> {
  const choices: ChoiceState[] = Array.from({ length: plan.n }, () => ({
    detok: ctx.codec.createDetokenizer(),
    stops: new StopMatcher(plan.stops),
    isFinished: false,
  }));
  let numOpen = plan.n;
  const events = ctx.router.generate(
    {
      requestId,
      promptTokenIds: [...plan.promptIds],
      sampling: plan.sampling,
      maxTokens: plan.maxTokens,
      minTokens: plan.minTokens,
      stopTokenIds: [...plan.stopTokenIds],
      ignoreEos: plan.ignoreEos,
      priority: 0,
      cacheSalt: ctx.tenancy?.cacheSalt ?? "",
      adapter: plan.adapter?.name ?? "",
      adapterPath: plan.adapter?.path ?? "",
      priorityClass: ctx.priorityClass ?? PriorityClass.PRIORITY_CLASS_INTERACTIVE,
      n: plan.n,
      tenant: ctx.tenancy?.tenant ?? "",
      tenantWeight: ctx.tenancy?.tenantWeight ?? 0,
      pooling: PoolingType.POOLING_TYPE_NONE,
      // A grammar's mask is per sampled position, so constrained requests do not speculate.
      disableSpeculation: plan.isSpeculative === false || (plan.grammar ?? null) !== null,
      grammar: plan.grammar ?? undefined,
    },
    ctx.signal,
  );
  for await (const event of events) {
    const state = choices[event.token?.index ?? event.finished?.index ?? -1];
    if (!state || state.isFinished) continue;
    const delta = event.token ? onTokens(state, event.token) : onFinished(state, event.finished!);
    // A choice that matched a stop string stops generating now, not at max_tokens.
    const stopped =
      delta.finishReason === "stop" && event.token ? stopChoice(ctx, requestId, delta.index) : null;
    if (delta.finishReason !== null) {
      state.isFinished = true;
      numOpen--;
    }
    if (delta.text || delta.tokens.length || delta.finishReason) {
      yield { ...delta, index: indexOffset + delta.index };
    }
    if (numOpen === 0) {
      // Let the router end the request as "stop" before leaving cancels the call ("abort").
      await stopped;
      return;
    }
  }
  if (ctx.signal.aborted) {
    // A shutdown aborts with a KilnError the client should see; a client that left sees nothing.
    if (ctx.signal.reason instanceof KilnError) throw ctx.signal.reason;
    return;
  }
  throw new KilnError("WORKER_LOST", "The router ended the stream before every choice finished.");
}

function stopChoice(ctx: GenerationContext, requestId: string, index: number): Promise<void> {
  return ctx.router.stopChoice?.(requestId, index) ?? Promise.resolve();
}

function onTokens(state: ChoiceState, event: TokenEvent): ChoiceDelta {
  let text = "";
  const tokens: SampledToken[] = [];
  for (const token of event.tokens) {
    tokens.push(token);
    const result = state.stops.push(state.detok.push([token.tokenId]));
    text += result.text;
    if (result.isStopped) return { index: event.index, text, tokens, finishReason: "stop" };
  }
  return { index: event.index, text, tokens, finishReason: null };
}

function onFinished(state: ChoiceState, event: FinishedEvent): ChoiceDelta {
  const result = state.stops.push(state.detok.flush());
  const text = result.isStopped ? result.text : result.text + state.stops.flush();
  const reason = result.isStopped ? "stop" : toFinishReason(event.finishReason);
  const delta = { index: event.index, text, tokens: [], finishReason: reason };
  return event.usage ? { ...delta, numCachedTokens: event.usage.cachedTokens } : delta;
}

function toFinishReason(reason: string): FinishReason {
  return reason === "stop" || reason === "length" ? reason : "abort";
}

/**
 * Interleaves several generators (one per prompt) in arrival order. Leaving early returns all
 * of them; the first to throw ends the merge with its error.
 */
export async function* mergeGenerators<T>(gens: readonly AsyncGenerator<T>[]): AsyncGenerator<T> {
  if (gens.length === 1) {
    yield* gens[0]!;
    return;
  }
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<T> }>>();
  const pull = (i: number) => gens[i]!.next().then((r) => ({ i, r }));
  for (let i = 0; i < gens.length; i++) pending.set(i, pull(i));
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(i);
      } else {
        pending.set(i, pull(i));
        yield r.value;
      }
    }
  } finally {
    for (const i of pending.keys()) void gens[i]!.return(undefined).catch(() => {});
  }
}
