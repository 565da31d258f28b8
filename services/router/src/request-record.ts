import type { GenerateEvent, SampledToken, SamplingParams } from "@kiln/proto";

/**
 * What the router keeps for an accepted request while it runs: its prompt (to re-send to a
 * worker after a preemption or reset), each sequence's generated tokens, and where its events go.
 */
export interface RequestRecord {
  readonly requestId: string;
  readonly replicaId: string;
  readonly promptTokenIds: readonly number[];
  readonly sampling: SamplingParams;
  /** [n] generated token ids per sequence index. */
  readonly outputTokenIds: number[][];
  /** The request's LoRA adapter and its local directory (the worker loads it into a slot). */
  readonly adapter?: { readonly name: string; readonly path: string } | null;
  /** Receives every event of the request; the last is a finished (with usage) or error event. */
  readonly emit: (event: GenerateEvent) => void;
  /** Called once when the request ends for any reason; closes the stream. */
  readonly end: () => void;
}

export function tokenEvent(index: number, token: SampledToken): GenerateEvent {
  return { token: { index, tokens: [token] } };
}
