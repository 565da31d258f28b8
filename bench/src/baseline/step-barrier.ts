/**
 * Lockstep for the requests generating on one llama.cpp context, so that every decode holds
 * the next token of every active sequence, as llama.cpp's own server batches.
 *
 * Why: node-llama-cpp batches whatever sequences have queued a decode, but each sequence
 * samples in its own native async job and queues its next token as soon as its sample is
 * back; its batch loop then starts the next decode with only the sequences that were quick,
 * and the batch stays split for the rest of the run (measured on llama-110m: four concurrent
 * sequences cost about four times one, as if unbatched). Here a request that has its token
 * waits until every active request has its token too, and all of them ask for the next
 * token in the same macrotask, after node-llama-cpp's batch loop has finished.
 *
 * Order matters too: node-llama-cpp creates the context with a non-unified KV cache, and
 * llama.cpp then splits a batch into micro-batches of consecutive sequence ids, so a batch
 * whose sequences arrive as 7, 2, 3, 0… runs as several decodes. `arrive(rank)` releases a
 * round in rank order (the caller passes the sequence id), and the sequences queue their
 * tokens in that order: 16 sequences then decode as one micro-batch, about 3× faster than
 * in arrival order on llama-110m. (Ids stay consecutive only while every sequence of the
 * context is in use, which is why bench:compare sizes the context to the concurrency.)
 */
export class StepBarrier {
  private numActive = 0;
  private waiting: { rank: number; resolve: () => void }[] = [];
  private isReleaseScheduled = false;
  private timer: NodeJS.Timeout | null = null;

  /** @param maxWaitMs releases a round anyway after this long (a safety net, not a tuning knob). */
  constructor(private readonly maxWaitMs = 1000) {}

  /** A request starts generating; it takes part in every round until `leave`. */
  join(): void {
    this.numActive++;
  }

  /** A request stopped generating (finished, cancelled or failed). */
  leave(): void {
    this.numActive--;
    this.releaseIfComplete();
  }

  /**
   * Resolves once every active request has arrived in this round (on a later macrotask); a
   * round's requests are resumed in ascending `rank`.
   */
  arrive(rank = 0): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push({ rank, resolve });
      if (this.waiting.length === 1) {
        const round = this.waiting;
        this.timer = setTimeout(() => this.release(round), this.maxWaitMs);
      }
      this.releaseIfComplete();
    });
  }

  private releaseIfComplete(): void {
    if (this.waiting.length === 0 || this.waiting.length < this.numActive) return;
    if (this.isReleaseScheduled) return;
    this.isReleaseScheduled = true;
    const round = this.waiting;
    // setImmediate, not a microtask: node-llama-cpp's batch loop must see an empty queue and
    // end, so that all these requests queue together for one dispatch on the next turn.
    setImmediate(() => this.release(round));
  }

  private release(round: { rank: number; resolve: () => void }[]): void {
    if (round !== this.waiting) return; // already released
    this.waiting = [];
    this.isReleaseScheduled = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    round.sort((a, b) => a.rank - b.rank);
    for (const { resolve } of round) resolve();
  }
}
