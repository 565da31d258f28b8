import {
  type GrammarHosts,
  type GrammarSpec,
  isGrammarKind,
  type MaskJob,
  type StepInput,
} from "@kiln/kernels";
import type { SequenceFailure, StepRequest, GrammarSpec as WireGrammarSpec } from "@kiln/proto";

/**
 * Per-sequence grammar matchers of a worker (ADR 0016). The worker samples, so it is where the
 * mask is made and where each sampled token advances the matcher. The matchers live on grammar
 * host threads (`GrammarHosts`), never on the worker's event loop:
 *
 * - `prepareGrammar` compiles a spec ahead of its requests (the router's PrepareGrammar call),
 *   so a step never waits for a compile;
 * - a NewSequence with a grammar gets a fresh matcher and, when it resumes after a preemption,
 *   replays its `output_token_ids`; each of the n sequences of a request is its own
 *   NewSequence, hence its own matcher;
 * - every sampling row of a constrained sequence gets the matcher's allowed-token bitmask
 *   (applied before temperature, top-k and top-p), computed on its host;
 * - after the step, the sampled token is accepted.
 *
 * Once a grammar is complete and its stop token accepted the sequence's mask allows every token
 * (only `ignore_eos` lets it go on).
 */
export class GrammarTable {
  constructor(private readonly hosts: GrammarHosts | null) {}

  get numSequences(): number {
    return this.hosts?.numSequences ?? 0;
  }

  /**
   * Compiles `wire` on a grammar host unless one holds it. Resolves with an error message when
   * it cannot be compiled, null when it is ready.
   */
  async prepareGrammar(wire: WireGrammarSpec): Promise<string | null> {
    const spec = this.specOf(wire);
    if (typeof spec === "string") return spec;
    return this.hosts!.prepare(spec);
  }

  /**
   * Applies reset and removals, and creates matchers for the step's new sequences. Returns a
   * failure for each sequence whose grammar does not compile or whose replayed tokens it
   * refuses (the caller drops those sequences from the step).
   */
  async prepare(req: StepRequest): Promise<SequenceFailure[]> {
    if (req.reset) this.hosts?.dropAll();
    for (const seqId of req.removedSeqIds) this.hosts?.drop(seqId);
    const opening = req.newSequences.map(async (seq): Promise<SequenceFailure | null> => {
      this.hosts?.drop(seq.seqId);
      if (!seq.grammar || seq.grammar.kind === "") return null;
      const spec = this.specOf(seq.grammar);
      const message =
        typeof spec === "string"
          ? spec
          : await this.hosts!.open(seq.seqId, spec, seq.outputTokenIds);
      return message === null ? null : { seqId: seq.seqId, message };
    });
    return (await Promise.all(opening)).filter((f): f is SequenceFailure => f !== null);
  }

  /** `input` with the grammar bitmask on every sampling row of a constrained sequence. */
  async withMasks(req: StepRequest, input: StepInput, vocabSize: number): Promise<StepInput> {
    const masked = this.maskRows(req, input, vocabSize);
    if (masked === null) return input;
    await this.hosts!.fillMasks(masked.jobs);
    return masked.input;
  }

  /**
   * Like `withMasks`, without waiting for the masks (ADR 0016): the returned input carries
   * shared, still empty bitmasks and a `masksReady` flag, so the caller can post the step at once
   * and call `fill`, which has the hosts write the masks while the backend's thread runs the
   * forward pass, then flags them filled (or failed) for the thread. `fill` never rejects. Null
   * when the step has no constrained sample.
   */
  deferMasks(
    req: StepRequest,
    input: StepInput,
    vocabSize: number,
  ): { readonly input: StepInput; fill(): Promise<void> } | null {
    const masked = this.maskRows(req, input, vocabSize);
    if (masked === null) return null;
    const masksReady = new Int32Array(new SharedArrayBuffer(4));
    const fill = async () => {
      let state = 2;
      try {
        await this.hosts!.fillMasks(masked.jobs);
        state = 1;
      } finally {
        Atomics.store(masksReady, 0, state);
        Atomics.notify(masksReady, 0);
      }
    };
    return {
      input: { ...masked.input, masksReady },
      fill: () => fill().catch(() => {}),
    };
  }

  /** Advances a sequence's matcher by its sampled token. */
  accept(seqId: number, tokenId: number): void {
    this.hosts?.accept(seqId, tokenId);
  }

  clear(): void {
    this.hosts?.dropAll();
  }

  /** Empty (shared) bitmasks on the constrained sampling rows, and the jobs that fill them. */
  private maskRows(
    req: StepRequest,
    input: StepInput,
    vocabSize: number,
  ): { input: StepInput; jobs: MaskJob[] } | null {
    const hosts = this.hosts;
    if (hosts === null || hosts.numSequences === 0) return null;
    const numWords = Math.ceil(vocabSize / 32);
    const jobs: MaskJob[] = [];
    const samples = [...input.samples];
    for (let i = 0; i < req.sequences.length; i++) {
      const sample = samples[i];
      const seqId = req.sequences[i]!.seqId;
      if (!sample || !hosts.has(seqId)) continue;
      // Shared memory: the host thread writes the mask in place.
      const words = new Int32Array(new SharedArrayBuffer(4 * numWords));
      jobs.push({ seqId, words });
      samples[i] = { ...sample, allowedTokenBitmask: words };
    }
    return jobs.length === 0 ? null : { input: { ...input, samples }, jobs };
  }

  private specOf(wire: WireGrammarSpec): GrammarSpec | string {
    if (!this.hosts) return "this worker has no grammar engine (structured output is off)";
    if (!isGrammarKind(wire.kind)) return `unknown grammar kind "${wire.kind}"`;
    return { kind: wire.kind, text: wire.text, strict: wire.strict };
  }
}
