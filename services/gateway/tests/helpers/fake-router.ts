import { setImmediate } from "node:timers/promises";
import { type GenerateEvent, type GenerateRequest, type KilnError, PoolingType } from "@kiln/proto";
import type { RouterPort } from "../../src/router-port";
import { charId, EOS } from "./toy-codec";

/** What a scripted router does with each request. */
export interface FakeRouterScript {
  /** The text sample `index` writes; the default depends on seed and index. */
  text?(request: GenerateRequest, index: number): string;
  /** Throw this before any event (e.g. OVERLOADED). */
  failWith?: KilnError;
  /** Throw this after `failAfterTokens` token events. */
  failMidStream?: { afterTokens: number; error: KilnError };
  /** Never finish: emit a token every 5 ms until cancelled, whatever max_tokens says. */
  isEndless?: boolean;
  /** With isEndless: the pause between tokens in ms (default 5; 0 = as fast as the loop turns). */
  endlessIntervalMs?: number;
  /** Reported as `usage.cachedTokens` on the request's last FinishedEvent. */
  cachedTokens?: number;
}

const TEXTS = ["Hello world. The end.", "Once upon a time.", "Lily saw a dog!"];

/**
 * A RouterPort that "samples" fixed texts character by character (one token per event,
 * EOS at the end), honouring max_tokens and the abort signal. Records every request.
 */
export class FakeRouter implements RouterPort {
  readonly requests: GenerateRequest[] = [];
  /** Every stopChoice call; a stopped choice emits nothing more. */
  readonly stoppedChoices: { requestId: string; index: number }[] = [];
  numCancelled = 0;
  numOpen = 0;
  isHealthyValue = true;

  constructor(public script: FakeRouterScript = {}) {}

  textFor(request: GenerateRequest, index: number): string {
    if (this.script.text) return this.script.text(request, index);
    return TEXTS[((request.sampling?.seed ?? 0) + index) % TEXTS.length]!;
  }

  async *generate(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GenerateEvent> {
    this.requests.push(request);
    if (this.script.failWith) throw this.script.failWith;
    this.numOpen++;
    let isDone = false;
    try {
      yield* this.events(request, signal);
      isDone = true;
    } finally {
      this.numOpen--;
      if (!isDone || signal.aborted) this.numCancelled++;
    }
  }

  private async *events(request: GenerateRequest, signal: AbortSignal) {
    if (request.pooling !== PoolingType.POOLING_TYPE_NONE) {
      yield* this.embeddingEvents(request);
      return;
    }
    const n = Math.max(1, request.n);
    const texts = Array.from({ length: n }, (_, i) => [...this.textFor(request, i)]);
    const numTop = request.sampling?.numTopLogprobs ?? 0;
    let numTokenEvents = 0;
    let numFinished = 0;
    const numSteps = this.script.isEndless ? Number.POSITIVE_INFINITY : request.maxTokens;
    for (let step = 0; step <= numSteps; step++) {
      await setImmediate();
      const intervalMs = this.script.endlessIntervalMs ?? 5;
      if (this.script.isEndless && intervalMs > 0)
        await new Promise((r) => setTimeout(r, intervalMs));
      if (signal.aborted) return;
      const fail = this.script.failMidStream;
      if (fail && numTokenEvents >= fail.afterTokens) throw fail.error;
      for (let i = 0; i < n; i++) {
        if (this.isChoiceStopped(request, i)) continue;
        const chars = texts[i]!;
        const isEnd = !this.script.isEndless && step === chars.length;
        if (step > chars.length && !this.script.isEndless) continue;
        if (isEnd || step === numSteps) {
          const isLast = ++numFinished === n;
          const cached = isLast ? this.script.cachedTokens : undefined;
          yield finished(i, isEnd ? "stop" : "length", isEnd ? EOS : 0, cached);
          continue;
        }
        numTokenEvents++;
        yield tokenEvent(i, charId(chars[step % chars.length]!), numTop);
      }
    }
  }

  async stopChoice(requestId: string, index: number): Promise<void> {
    this.stoppedChoices.push({ requestId, index });
  }

  private isChoiceStopped(request: GenerateRequest, index: number): boolean {
    return this.stoppedChoices.some((a) => a.requestId === request.requestId && a.index === index);
  }

  /** A pooling request: one token carrying [promptLen, sum of ids, 0, -1] as its "embedding". */
  private async *embeddingEvents(request: GenerateRequest): AsyncGenerator<GenerateEvent> {
    await setImmediate();
    const ids = request.promptTokenIds;
    const embedding = [ids.length, ids.reduce((a, b) => a + b, 0), 0, -1];
    yield { token: { index: 0, tokens: [{ tokenId: 5, logprob: 0, topLogprobs: [], embedding }] } };
    yield finished(0, "length", 0, 0);
  }

  async isHealthy(): Promise<boolean> {
    return this.isHealthyValue;
  }

  close(): void {}
}

function tokenEvent(index: number, tokenId: number, numTop: number): GenerateEvent {
  const topLogprobs = Array.from({ length: numTop }, (_, k) => ({
    tokenId: k === 0 ? tokenId : charId(String.fromCharCode(97 + k)),
    logprob: -0.25 * (k + 1),
  }));
  return { token: { index, tokens: [{ tokenId, logprob: -0.25, topLogprobs, embedding: [] }] } };
}

function finished(
  index: number,
  finishReason: string,
  stopTokenId: number,
  cachedTokens: number | undefined,
): GenerateEvent {
  const usage =
    cachedTokens === undefined ? undefined : { promptTokens: 0, completionTokens: 0, cachedTokens };
  return { finished: { index, finishReason, stopTokenId, usage } };
}
