import { buildStepArrays } from "@kiln/engine-core";
import type { SampleRequest, SamplingParams, StepInput } from "@kiln/kernels";

/**
 * What the worker remembers about a sequence between steps. The router sends each step as a
 * delta (new sequences, removed ids, appended block ids); this table turns the delta back into
 * the full, flattened `StepInput` a backend takes.
 */
interface SequenceState {
  readonly promptTokenIds: readonly number[];
  readonly outputTokenIds: number[];
  readonly sampling: SamplingParams;
  readonly blockTable: number[];
}

export interface NewSequenceDelta {
  readonly seqId: number;
  readonly promptTokenIds: readonly number[];
  readonly outputTokenIds: readonly number[];
  readonly sampling: SamplingParams;
}

export interface ScheduledSequenceDelta {
  readonly seqId: number;
  /** The query tokens of this step. */
  readonly tokenIds: readonly number[];
  /** Tokens already in the KV cache before this step. */
  readonly numComputedTokens: number;
  readonly newBlockIds: readonly number[];
  readonly doSample: boolean;
  readonly outputIndex: number;
  /** Ids the sampler must not pick (stop ids before min_tokens is reached). */
  readonly bannedTokenIds?: readonly number[];
  /** Speculative decoding: the query's trailing draft tokens to verify (ADR 0017). */
  readonly draftTokenIds?: readonly number[];
  /** Trailing blocks to drop from the table before appending `newBlockIds` (released drafts). */
  readonly numDroppedBlocks?: number;
}

export interface StepDelta {
  readonly newSequences: readonly NewSequenceDelta[];
  readonly removedSeqIds: readonly number[];
  readonly sequences: readonly ScheduledSequenceDelta[];
  readonly blockCopies: readonly number[];
  /** Forget every sequence before applying the rest. */
  readonly reset: boolean;
}

/** A step the router sent that contradicts the worker's state (a router bug, never user input). */
export class StepDeltaError extends Error {
  override readonly name = "StepDeltaError";
}

export class SequenceTable {
  private readonly seqIdToState = new Map<number, SequenceState>();

  constructor(
    private readonly blockSize: number,
    private readonly numBlocks: number,
  ) {}

  get numSequences(): number {
    return this.seqIdToState.size;
  }

  /**
   * Applies the delta (reset, removals, new sequences, then appended blocks) and returns the
   * backend input. Throws StepDeltaError when the delta names an unknown sequence, a block id out
   * of range or a block table too short for its tokens; the table is then in an unspecified state
   * and the router's next step carries `reset`. The worker service runs `checkStep`
   * (rpc/check-step.ts) first, so a step that reaches here is applied whole.
   */
  applyStep(delta: StepDelta): StepInput {
    if (delta.reset) this.seqIdToState.clear();
    for (const seqId of delta.removedSeqIds) this.seqIdToState.delete(seqId);
    for (const seq of delta.newSequences) {
      this.seqIdToState.set(seq.seqId, {
        promptTokenIds: [...seq.promptTokenIds],
        outputTokenIds: [...seq.outputTokenIds],
        sampling: seq.sampling,
        blockTable: [],
      });
    }
    const states = delta.sequences.map((seq) => this.stateOf(seq.seqId));
    this.checkBlockIds(delta);
    delta.sequences.forEach((seq, i) => {
      const table = states[i]!.blockTable;
      const numDropped = seq.numDroppedBlocks ?? 0;
      if (numDropped > table.length) {
        throw new StepDeltaError(
          `sequence ${seq.seqId} drops ${numDropped} of ${table.length} blocks`,
        );
      }
      table.length -= numDropped;
      table.push(...seq.newBlockIds);
    });
    return this.buildInput(delta, states);
  }

  /** Length of a held sequence's block table, or null when the table does not hold it. */
  blockTableLenOf(seqId: number): number | null {
    return this.seqIdToState.get(seqId)?.blockTable.length ?? null;
  }

  /** The last token of a held sequence's output (the one sampled last), or null. */
  lastSampledOf(seqId: number): number | null {
    return this.seqIdToState.get(seqId)?.outputTokenIds.at(-1) ?? null;
  }

  /** Appends the token sampled for a sequence (the worker's copy of its output, for penalties). */
  recordSampled(seqId: number, tokenId: number): void {
    this.seqIdToState.get(seqId)?.outputTokenIds.push(tokenId);
  }

  private stateOf(seqId: number): SequenceState {
    const state = this.seqIdToState.get(seqId);
    if (!state) throw new StepDeltaError(`step schedules unknown sequence ${seqId}`);
    return state;
  }

  private checkBlockIds(delta: StepDelta): void {
    const check = (id: number) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.numBlocks) {
        throw new StepDeltaError(`block id ${id} is outside 0..${this.numBlocks - 1}`);
      }
    };
    for (const seq of delta.sequences) seq.newBlockIds.forEach(check);
    delta.blockCopies.forEach(check);
    if (delta.blockCopies.length % 2 !== 0) {
      throw new StepDeltaError("block_copies must hold (src, dst) pairs");
    }
  }

  private buildInput(delta: StepDelta, states: readonly SequenceState[]): StepInput {
    const seqs = delta.sequences.map((seq, i) => {
      const blockTable = states[i]!.blockTable;
      const contextLen = seq.numComputedTokens + seq.tokenIds.length;
      if (blockTable.length * this.blockSize < contextLen) {
        throw new StepDeltaError(
          `sequence ${seq.seqId} needs ${contextLen} KV slots but holds ${blockTable.length} blocks`,
        );
      }
      return { tokenIds: seq.tokenIds, queryLen: seq.tokenIds.length, contextLen, blockTable };
    });
    const blockCopies: { src: number; dst: number }[] = [];
    for (let i = 0; i < delta.blockCopies.length; i += 2) {
      blockCopies.push({ src: delta.blockCopies[i]!, dst: delta.blockCopies[i + 1]! });
    }
    const numScheduledTokens = seqs.reduce((n, seq) => n + seq.queryLen, 0);
    const arrays = buildStepArrays({ seqs, numScheduledTokens, blockCopies }, this.blockSize);
    const samples = delta.sequences.map((seq, i): SampleRequest | null => {
      if (!seq.doSample) return null;
      const state = states[i]!;
      return {
        params: state.sampling,
        outputIndex: seq.outputIndex,
        promptTokenIds: state.promptTokenIds,
        outputTokenIds: state.outputTokenIds,
        bannedTokenIds: seq.bannedTokenIds ?? [],
        ...(seq.draftTokenIds?.length ? { draftTokenIds: seq.draftTokenIds } : {}),
      };
    });
    return { ...arrays, samples };
  }
}
