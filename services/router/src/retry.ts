import type { ServerWritableStream } from "@grpc/grpc-js";
import type { NewRequest } from "@kiln/engine-core";
import { ErrorCode, type SamplingParams } from "@kiln/proto";
import type { Context } from "@kiln/telemetry";
import type { ReplicaSet } from "./replica-set";
import type { RequestRecord } from "./request-record";

/** How long a lost request may wait for a healthy replica, and how often it looks. */
export interface RetryOptions {
  /** 0 turns retries off. Capped by the Generate call's own deadline. */
  readonly retryWaitMs: number;
  readonly pollMs?: number;
}

const DEFAULT_POLL_MS = 100;

/**
 * Safe retry of one request. When its replica is lost before any token reached the client
 * (every sequence's output is still empty), the request runs again, once, from the start on a
 * healthy replica: another one, or the same one if its worker comes back within the wait. The
 * client sees one uninterrupted stream whose output is exactly what the first attempt would
 * have produced (the attempt starts from the same prompt, sampling and seed). A request that
 * already streamed a token cannot be replayed without duplicating output: it ends with
 * WORKER_LOST, as does one that finds no healthy replica in time.
 *
 * Mutates nothing but its own state; the request is re-added through `ReplicaSet.route` and
 * `Replica.tryAdd`, so the new replica owns it exactly as if Generate had routed it there.
 */
export class RequestRetry {
  private numRetries = 0;
  private isCancelled = false;

  constructor(
    private readonly replicas: ReplicaSet,
    private readonly request: NewRequest<SamplingParams>,
    private readonly parent: Context,
    private readonly options: RetryOptions,
    /** When the Generate call's own deadline passes (ms since the epoch), or Infinity. */
    private readonly callDeadlineMs: number,
  ) {}

  /** The client went away: a pending retry gives up silently. */
  cancel(): void {
    this.isCancelled = true;
  }

  /** RequestRecord.onLost: true when the request will run again (the replica must not end it). */
  tryTakeOver(record: RequestRecord, reason: string): boolean {
    if (this.isCancelled || this.numRetries >= 1 || this.options.retryWaitMs <= 0) return false;
    if (record.outputTokenIds.some((ids) => ids.length > 0)) return false;
    this.numRetries++;
    const deadlineMs = Math.min(Date.now() + this.options.retryWaitMs, this.callDeadlineMs);
    void this.retryWhenReady(record, reason, deadlineMs);
    return true;
  }

  private async retryWhenReady(record: RequestRecord, reason: string, deadlineMs: number) {
    const pollMs = this.options.pollMs ?? DEFAULT_POLL_MS;
    // Always yield first: the lost replica is still failing its other requests.
    do {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      if (this.isCancelled) return;
      const replica = this.replicas.route(
        this.request.promptTokenIds,
        this.request.cacheSalt ?? null,
      );
      if (!replica) continue;
      const error = replica.tryAdd(this.request, record, this.parent);
      if (error === null) {
        process.stderr.write(
          `kiln router: request ${record.requestId} retried on ${replica.replicaId} (${reason})\n`,
        );
        return;
      }
      // route() returned a healthy replica, so this is its scheduler refusing the request.
      return this.giveUp(record, `${reason}; ${error}`);
    } while (Date.now() < deadlineMs);
    this.giveUp(record, `${reason}; no healthy replica to retry on`);
  }

  private giveUp(record: RequestRecord, reason: string): void {
    if (this.isCancelled) return;
    record.emit({ error: { code: ErrorCode.WORKER_LOST, message: `worker lost: ${reason}` } });
    record.end();
  }
}

/** The Generate call's deadline in ms since the epoch; Infinity when the caller set none. */
export function callDeadlineMs(call: Pick<ServerWritableStream<unknown, unknown>, "getDeadline">) {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  return Number.isFinite(ms) && ms > 0 ? ms : Number.POSITIVE_INFINITY;
}
