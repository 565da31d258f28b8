/**
 * The collectives tensor-parallel ranks use (ADR 0018), behind one interface whatever carries
 * them: shared memory between the processes of one host (ShmGroup) or, between hosts, TCP.
 *
 * Every call is synchronous and collective: all ranks of the group make the same calls in the
 * same order. A call that cannot complete because a peer died, stalled past the group's
 * timeout or the group was re-formed throws a `GroupLostError` (code WORKER_LOST); the group
 * must then be re-formed (`TensorParallelLeader`) before the next step.
 */
export interface Collective {
  readonly rank: number;
  readonly size: number;
  /** buf[0..n) ← the sum over ranks of every rank's buf[0..n), bit-identical on every rank. */
  allReduce(buf: Float32Array, n: number): void;
}

/** Thrown when a collective cannot complete; crosses process boundaries as WORKER_LOST. */
export class GroupLostError extends Error {
  readonly code = "WORKER_LOST";
  constructor(message: string) {
    super(message);
    this.name = "GroupLostError";
  }
}

/** Whether `err` is a lost group (from TypeScript or from the native addon). */
export function isGroupLost(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "WORKER_LOST";
}

/** One rank's view of the group's processes. */
export interface RankStatus {
  readonly pid: number;
  readonly isAlive: boolean;
  /** Joined the group's current epoch. */
  readonly isJoined: boolean;
}
