import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";

/**
 * Hands out the `sequences` slots of one llama.cpp context to requests, first come first
 * served. node-llama-cpp batches the tokens of every sequence that evaluates in the same
 * event-loop cycle into one llama_decode, which is llama.cpp's continuous batching: a
 * request that arrives mid-run joins the next decode as soon as a slot is free.
 */
export class SequencePool {
  private readonly waiters: ((seq: LlamaContextSequence) => void)[] = [];

  constructor(private readonly context: LlamaContext) {}

  /** Number of requests waiting for a slot. */
  get numWaiting(): number {
    return this.waiters.length;
  }

  /** A fresh sequence (empty KV), now or once one is released. The caller must release it. */
  acquire(): Promise<LlamaContextSequence> {
    if (this.context.sequencesLeft > 0 && this.waiters.length === 0) {
      return Promise.resolve(this.context.getSequence());
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Frees the sequence's KV cells and passes its slot to the oldest waiter. */
  async release(seq: LlamaContextSequence): Promise<void> {
    await seq.dispose();
    const next = this.waiters.shift();
    if (next) next(this.context.getSequence());
  }
}
