import type { DraftRequest } from "@kiln/engine-core";
import { GREEDY_SAMPLING, type NewSequence, type StepRequest, type WorkerInfo } from "@kiln/proto";
import { checkStepResponse } from "./rpc/check-step-response";
import type { WorkerConnection } from "./worker-connection";

/** What the router keeps about one sequence on the draft worker. */
interface DraftSeq {
  /** Tokens whose K/V the draft worker holds, in position order. */
  readonly fed: number[];
  /** The draft worker's blocks for this sequence (the router's accounting of its KV). */
  readonly blockIds: number[];
  /** Blocks of `blockIds` the worker has been sent. */
  numBlocksOnWorker: number;
  isOnWorker: boolean;
}

interface Proposal {
  /** Length of the target sequence the drafts continue. */
  readonly len: number;
  readonly drafts: number[];
}

/**
 * The draft model of one replica (draft-model speculative decoding, ADR 0017): a worker process
 * that registered with role "draft", stepped by the router before each target step. For every
 * sequence the scheduler asks about it catches the draft's KV up with the sequence (the tokens
 * the target accepted since, in one prefill-like query) and then runs k greedy steps, one draft
 * token each, batched over sequences. Its KV blocks are accounted here, separately from the
 * target's: a sequence keeps its blocks while it runs; drafts the target rejected are simply
 * overwritten (only the common prefix of what the draft was fed and what the sequence holds
 * counts as computed). Sequences that stop running are dropped at the next draft step.
 *
 * Every draft step carries `instance_id`, so a draft worker that restarted refuses it; any
 * failure rejects `propose` (the replica then detaches the draft and decodes without it).
 */
export class DraftWorker {
  private readonly seqIdToState = new Map<number, DraftSeq>();
  private readonly freeBlockIds: number[] = [];
  private proposals = new Map<number, Proposal>();
  private removedSeqIds: number[] = [];
  private needsReset = true;
  private nextStepId = 0;

  constructor(
    readonly connection: WorkerConnection,
    readonly info: WorkerInfo,
    private readonly stepTimeoutMs: number,
  ) {
    this.reset();
  }

  get numFreeBlocks(): number {
    return this.freeBlockIds.length;
  }

  get numSequences(): number {
    return this.seqIdToState.size;
  }

  /** Forgets every sequence (the target's scheduler was replaced); the next step resets. */
  reset(): void {
    this.seqIdToState.clear();
    this.proposals.clear();
    this.removedSeqIds = [];
    this.freeBlockIds.length = 0;
    for (let id = this.info.numBlocks - 1; id >= 0; id--) this.freeBlockIds.push(id);
    this.needsReset = true;
  }

  /**
   * The drafts the last `propose` made for `seqId`, at most `maxDrafts`, provided the sequence
   * has not changed length since; otherwise none.
   */
  draftsFor(seqId: number, tokenIds: readonly number[], maxDrafts: number): number[] {
    const proposal = this.proposals.get(seqId);
    if (proposal === undefined || proposal.len !== tokenIds.length) return [];
    return proposal.drafts.slice(0, maxDrafts);
  }

  /**
   * Runs the draft model for `requests` (up to `maxDrafts` greedy tokens each) and keeps the
   * proposals for `draftsFor`. Sequences not in `liveSeqIds` are dropped first. A request whose
   * blocks do not fit, or whose context the draft model cannot hold, gets no drafts. Resolves
   * with the number of draft steps it ran.
   */
  async propose(requests: readonly DraftRequest[], liveSeqIds: readonly number[]): Promise<number> {
    this.proposals = new Map();
    this.dropExcept(new Set(liveSeqIds));
    const runs = requests.flatMap((request) => {
      const state = this.prepare(request);
      return state === null ? [] : [{ request, state, drafts: [] as number[] }];
    });
    if (runs.length === 0) return 0;
    const maxLen = Math.max(...runs.map((run) => run.request.maxDrafts));
    for (let position = 0; position < maxLen; position++) {
      const active = runs.filter((run) => run.request.maxDrafts > position);
      const tokens = await this.step(
        active.map(({ request, state, drafts }) => {
          // First position: catch up with the sequence; then feed the previous draft.
          const query =
            position === 0 ? request.tokenIds.slice(state.fed.length) : [drafts.at(-1)!];
          return { seqId: request.seqId, state, query, promptTokenIds: request.tokenIds };
        }),
      );
      active.forEach((run, i) => {
        run.drafts.push(tokens[i]!);
      });
    }
    for (const { request, drafts } of runs) {
      this.proposals.set(request.seqId, { len: request.tokenIds.length, drafts });
    }
    return maxLen;
  }

  /**
   * Matches the draft's KV to the sequence (the common prefix of what it was fed and the
   * sequence's tokens, leaving at least the last token to query) and allocates the blocks the
   * catch-up and the drafts need. Null when they do not fit.
   */
  private prepare(request: DraftRequest): DraftSeq | null {
    const { tokenIds, maxDrafts } = request;
    // The last draft is sampled, never fed: positions 0 … len + maxDrafts − 2 hold K/V.
    const numPositions = tokenIds.length + maxDrafts - 1;
    if (numPositions > this.info.maxModelLen) return null;
    const state = this.seqIdToState.get(request.seqId) ?? {
      fed: [],
      blockIds: [],
      numBlocksOnWorker: 0,
      isOnWorker: false,
    };
    const numBlocks = Math.ceil(numPositions / this.info.blockSize);
    const numNew = numBlocks - state.blockIds.length;
    if (numNew > this.freeBlockIds.length) return null;
    for (let i = 0; i < numNew; i++) state.blockIds.push(this.freeBlockIds.pop()!);
    let numValid = 0;
    const limit = Math.min(state.fed.length, tokenIds.length - 1);
    while (numValid < limit && state.fed[numValid] === tokenIds[numValid]) numValid++;
    state.fed.length = numValid;
    this.seqIdToState.set(request.seqId, state);
    return state;
  }

  /** One draft step: each entry's query is appended to its KV; returns each greedy token. */
  private async step(
    entries: readonly {
      seqId: number;
      state: DraftSeq;
      query: readonly number[];
      promptTokenIds: readonly number[];
    }[],
  ): Promise<number[]> {
    const newSequences: NewSequence[] = [];
    const request: StepRequest = {
      stepId: this.nextStepId++,
      reset: this.needsReset,
      newSequences,
      removedSeqIds: this.removedSeqIds,
      sequences: entries.map(({ seqId, state, query, promptTokenIds }) => {
        if (!state.isOnWorker) {
          newSequences.push({
            seqId,
            promptTokenIds: [...promptTokenIds],
            outputTokenIds: [],
            // Greedy: the draft model proposes its argmax (a deterministic proposal, ADR 0017).
            sampling: GREEDY_SAMPLING,
            grammar: undefined,
          });
        }
        const newBlockIds = state.blockIds.slice(state.numBlocksOnWorker);
        return {
          seqId,
          tokenIds: [...query],
          numComputedTokens: state.fed.length,
          newBlockIds,
          doSample: true,
          outputIndex: 0,
          bannedTokenIds: [],
          pooling: 0,
          loraSlot: 0,
          draftTokenIds: [],
          numDroppedBlocks: 0,
          isInputPending: false,
          numSteps: 1,
          stopTokenIds: [],
        };
      }),
      blockCopies: [],
      instanceId: this.info.instanceId,
      loraLoads: [],
    };
    // Until the answer arrives the worker's state is unknown: a failure resets it.
    this.needsReset = true;
    const response = await this.connection.step(request, this.stepTimeoutMs);
    const invalid = checkStepResponse(request, response, this.info.vocabSize);
    if (invalid) throw new Error(`the draft worker sent an invalid step answer: ${invalid}`);
    if (response.failures.length > 0) {
      throw new Error(`the draft worker refused a sequence: ${response.failures[0]!.message}`);
    }
    this.needsReset = false;
    this.removedSeqIds = [];
    const seqIdToToken = new Map(response.results.map((r) => [r.seqId, r.token!.tokenId]));
    return entries.map(({ seqId, state, query }) => {
      state.isOnWorker = true;
      state.numBlocksOnWorker = state.blockIds.length;
      state.fed.push(...query);
      const token = seqIdToToken.get(seqId);
      if (token === undefined) throw new Error(`the draft worker sent no token for ${seqId}`);
      return token;
    });
  }

  /** Frees the blocks of sequences that stopped running; the worker drops them next step. */
  dropExcept(liveSeqIds: ReadonlySet<number>): void {
    for (const [seqId, state] of this.seqIdToState) {
      if (liveSeqIds.has(seqId)) continue;
      this.seqIdToState.delete(seqId);
      this.freeBlockIds.push(...state.blockIds);
      if (state.isOnWorker) this.removedSeqIds.push(seqId);
    }
  }
}
