import type {
  GenerateEvent,
  GrammarSpec,
  PoolingType,
  SampledToken,
  SamplingParams,
} from "@kiln/proto";

/**
 * What the router keeps for an accepted request while it runs: its prompt (to re-send to a
 * worker after a preemption or reset), each sequence's generated tokens, and where its events go.
 */
export interface RequestRecord {
  readonly requestId: string;
  readonly replicaId: string;
  readonly promptTokenIds: readonly number[];
  readonly sampling: SamplingParams;
  /** Not NONE for an embedding request: every step of its sequence asks the worker to pool. */
  readonly pooling?: PoolingType;
  /** Structured output (ADR 0016): sent with every NewSequence of the request (each fork too). */
  readonly grammar?: GrammarSpec;
  /** [n] generated token ids per sequence index. */
  readonly outputTokenIds: number[][];
  /** The request's LoRA adapter and its local directory (the worker loads it into a slot). */
  readonly adapter?: { readonly name: string; readonly path: string } | null;
  /** Receives every event of the request; the last is a finished (with usage) or error event. */
  readonly emit: (event: GenerateEvent) => void;
  /** Called once when the request ends for any reason; closes the stream. */
  readonly end: () => void;
  /**
   * Offered the request when its replica is lost (see retry.ts). Returns true when it took the
   * request over (it will run again elsewhere): the replica then neither emits WORKER_LOST nor
   * ends it. Absent or false: the request ends with WORKER_LOST.
   */
  readonly onLost?: (reason: string) => boolean;
}

export function tokenEvent(index: number, token: SampledToken): GenerateEvent {
  return { token: { index, tokens: [token] } };
}

/** The finished event of sequence `index`; the last one of the request carries the usage. */
export function finishedEvent(
  record: RequestRecord,
  index: number,
  finishReason: string,
  stopTokenId: number,
  isLast: boolean,
  /** Prompt tokens found in the prefix cache at the request's first admission. */
  cachedTokens = 0,
): GenerateEvent {
  const numCompletion = record.outputTokenIds.reduce((n, ids) => n + ids.length, 0);
  const usage = isLast
    ? {
        promptTokens: record.promptTokenIds.length,
        completionTokens: numCompletion,
        cachedTokens,
      }
    : undefined;
  return { finished: { index, finishReason, stopTokenId, usage } };
}
