import {
  type GrammarEngine,
  type GrammarSpec,
  isGrammarKind,
  type SequenceGrammar,
  type StepInput,
} from "@kiln/kernels";
import type { SequenceFailure, StepRequest, GrammarSpec as WireGrammarSpec } from "@kiln/proto";

/**
 * Per-sequence grammar matchers of a worker (ADR 0016). The worker samples, so it is where the
 * mask is made and where each sampled token advances the matcher:
 *
 * - a NewSequence with a grammar gets a fresh matcher (the compiled grammar comes from the
 *   engine's cache) and, when it resumes after a preemption, replays its `output_token_ids`;
 *   each of the n sequences of a request is its own NewSequence, hence its own matcher;
 * - before the backend runs, every sampling row of a constrained sequence gets the matcher's
 *   allowed-token bitmask (applied before temperature, top-k and top-p);
 * - after it, the sampled token is accepted; a rejected draft token (speculative decoding)
 *   would be undone with `SequenceGrammar.rollback(numTokens)`.
 *
 * Once a grammar is complete and its stop token accepted the sequence samples unconstrained
 * (only `ignore_eos` lets it go on).
 */
export class GrammarTable {
  private readonly seqIdToGrammar = new Map<number, SequenceGrammar>();
  /** The next-token mask of a sequence, computed (or computing) for its current state. */
  private readonly seqIdToNextMask = new Map<number, Promise<Int32Array>>();

  constructor(private readonly engine: GrammarEngine | null) {}

  get numSequences(): number {
    return this.seqIdToGrammar.size;
  }

  /**
   * Applies reset and removals, and creates matchers for the step's new sequences. Returns a
   * failure for each sequence whose grammar does not compile or whose replayed tokens it
   * refuses (the caller drops those sequences from the step).
   */
  async prepare(req: StepRequest): Promise<SequenceFailure[]> {
    if (req.reset) this.clear();
    for (const seqId of req.removedSeqIds) this.drop(seqId);
    const failures: SequenceFailure[] = [];
    for (const seq of req.newSequences) {
      this.drop(seq.seqId);
      if (!seq.grammar || seq.grammar.kind === "") continue;
      const message = await this.tryCreate(seq.seqId, seq.grammar, seq.outputTokenIds);
      if (message) failures.push({ seqId: seq.seqId, message });
    }
    return failures;
  }

  /** `input` with the grammar bitmask on every sampling row of a constrained sequence. */
  async withMasks(req: StepRequest, input: StepInput): Promise<StepInput> {
    if (this.seqIdToGrammar.size === 0) return input;
    let samples: StepInput["samples"] | null = null;
    for (let i = 0; i < req.sequences.length; i++) {
      const sample = input.samples[i];
      const grammar = this.seqIdToGrammar.get(req.sequences[i]!.seqId);
      if (!sample || !grammar || grammar.isTerminated) continue;
      samples ??= [...input.samples];
      (samples as (typeof samples)[number][])[i] = {
        ...sample,
        allowedTokenBitmask: await this.nextMaskOf(req.sequences[i]!.seqId, grammar),
      };
    }
    return samples ? { ...input, samples } : input;
  }

  /**
   * Like `withMasks`, without waiting for the masks (ADR 0016): the returned input carries
   * shared, still empty bitmasks and a `masksReady` flag, so the caller can post the step at once
   * and call `fill`, which computes the masks while the backend's thread runs the forward pass,
   * copies them in, then flags them filled (or failed) for the thread. `fill` never rejects. Null
   * when the step has no constrained sample.
   */
  deferMasks(
    req: StepRequest,
    input: StepInput,
    vocabSize: number,
  ): { readonly input: StepInput; fill(): Promise<void> } | null {
    if (this.seqIdToGrammar.size === 0) return null;
    const numWords = Math.ceil(vocabSize / 32);
    const jobs: { seqId: number; grammar: SequenceGrammar; words: Int32Array }[] = [];
    const samples = [...input.samples];
    for (let i = 0; i < req.sequences.length; i++) {
      const sample = samples[i];
      const seqId = req.sequences[i]!.seqId;
      const grammar = this.seqIdToGrammar.get(seqId);
      if (!sample || !grammar || grammar.isTerminated) continue;
      const words = new Int32Array(new SharedArrayBuffer(4 * numWords));
      jobs.push({ seqId, grammar, words });
      samples[i] = { ...sample, allowedTokenBitmask: words };
    }
    if (jobs.length === 0) return null;
    const masksReady = new Int32Array(new SharedArrayBuffer(4));
    const fill = async () => {
      let state = 2;
      try {
        for (const job of jobs) {
          const mask = await this.nextMaskOf(job.seqId, job.grammar);
          if (mask.length > numWords)
            throw new Error("a grammar mask is wider than the vocabulary");
          job.words.set(mask);
        }
        state = 1;
      } finally {
        Atomics.store(masksReady, 0, state);
        Atomics.notify(masksReady, 0);
      }
    };
    return {
      input: { ...input, samples, masksReady },
      fill: () => fill().catch(() => {}),
    };
  }

  /** Advances a sequence's matcher by its sampled token. */
  accept(seqId: number, tokenId: number): void {
    const grammar = this.seqIdToGrammar.get(seqId);
    this.seqIdToNextMask.delete(seqId);
    if (grammar && !grammar.isTerminated) grammar.accept(tokenId);
  }

  /**
   * Computes every constrained sequence's next mask now, so that the next step finds it ready:
   * the worker calls it after answering a step, while the router commits and plans the next one
   * (ADR 0016). Resolves once all are computed.
   */
  async prefetchMasks(): Promise<void> {
    const pending: Promise<Int32Array>[] = [];
    for (const [seqId, grammar] of this.seqIdToGrammar) {
      if (!grammar.isTerminated) pending.push(this.nextMaskOf(seqId, grammar));
    }
    await Promise.all(pending);
  }

  clear(): void {
    for (const grammar of this.seqIdToGrammar.values()) grammar.dispose();
    this.seqIdToGrammar.clear();
    this.seqIdToNextMask.clear();
  }

  private nextMaskOf(seqId: number, grammar: SequenceGrammar): Promise<Int32Array> {
    let mask = this.seqIdToNextMask.get(seqId);
    if (!mask) {
      mask = grammar.nextTokenBitmask();
      this.seqIdToNextMask.set(seqId, mask);
    }
    return mask;
  }

  private drop(seqId: number): void {
    this.seqIdToGrammar.get(seqId)?.dispose();
    this.seqIdToGrammar.delete(seqId);
    this.seqIdToNextMask.delete(seqId);
  }

  private async tryCreate(
    seqId: number,
    wire: WireGrammarSpec,
    replay: readonly number[],
  ): Promise<string | null> {
    if (!this.engine) return "this worker has no grammar engine (structured output is off)";
    if (!isGrammarKind(wire.kind)) return `unknown grammar kind "${wire.kind}"`;
    const spec: GrammarSpec = { kind: wire.kind, text: wire.text, strict: wire.strict };
    let grammar: SequenceGrammar;
    try {
      grammar = await this.engine.createMatcher(spec);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    for (const tokenId of replay) {
      if (grammar.isTerminated) break;
      if (!grammar.accept(tokenId)) {
        grammar.dispose();
        return `output token ${tokenId} does not match the sequence's grammar`;
      }
    }
    this.seqIdToGrammar.set(seqId, grammar);
    return null;
  }
}
