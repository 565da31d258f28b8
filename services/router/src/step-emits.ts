import type { EngineEvent } from "@kiln/engine-core";
import type { GenerateEvent, SampledToken } from "@kiln/proto";
import { finishedEvent, type RequestRecord, tokenEvent } from "./request-record";

/**
 * A committed step's stream writes, split from the router's bookkeeping so that the writes can
 * wait until the next step has been sent (overlapped steps, ADR 0021).
 */

/** One write to a request's stream; `isEnd`: then close it (its last choice finished). */
export interface Emit {
  readonly record: RequestRecord;
  readonly event: GenerateEvent;
  readonly isEnd: boolean;
}

/** A committed step whose events have not been streamed yet. */
export interface PendingEmits {
  readonly events: readonly EngineEvent<SampledToken>[];
  readonly emits: readonly Emit[];
}

/**
 * The router's bookkeeping of committed events, done at commit because the next plan may re-send
 * a preempted sequence's output from its record: appends each token to its record, and removes
 * a request from `idToRecord` when its last choice finished. Returns the stream writes, in
 * event order, for `emitAll`. Events of requests not in `idToRecord` (aborted) are skipped.
 */
export function collectEmits(
  events: readonly EngineEvent<SampledToken>[],
  idToRecord: Map<string, RequestRecord>,
): Emit[] {
  const emits: Emit[] = [];
  for (const event of events) {
    const record = idToRecord.get(event.requestId);
    if (!record) continue;
    if (event.kind === "token") {
      record.outputTokenIds[event.seqIndex]?.push(event.sampled.tokenId);
      emits.push({ record, event: tokenEvent(event.seqIndex, event.sampled), isEnd: false });
    } else if (event.kind === "finished") {
      const isLast = event.requestDone !== null;
      const stopTokenId = event.stopTokenId ?? 0;
      const cachedTokens = event.requestDone?.numCachedTokens ?? 0;
      const finished = finishedEvent(
        record,
        event.seqIndex,
        event.reason,
        stopTokenId,
        isLast,
        cachedTokens,
      );
      emits.push({ record, event: finished, isEnd: isLast });
      if (isLast) idToRecord.delete(event.requestId);
    }
  }
  return emits;
}

/** Performs the writes in order, ending the streams whose last event it was. */
export function emitAll(emits: readonly Emit[]): void {
  for (const { record, event, isEnd } of emits) {
    record.emit(event);
    if (isEnd) record.end();
  }
}

/** Resolves after the event loop's I/O phase (a queued gRPC write has been handed to the OS). */
export function afterIo(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
