import type { EngineState } from "./engine-state";
import { invariant } from "./errors";
import { asBlockId } from "./ids";
import { compareSeqs, type Sequence } from "./sequence";

/**
 * Cross-structure invariants of a scheduler between calls (a plan may be pending): queues sorted
 * and disjoint, reference counts equal to the references sequences hold, blocks shared only
 * where sharing is legal, slot reservations within maxNumSeqs. Throws InvariantError.
 */
export function checkEngineInvariants<S>(state: EngineState<S>): void {
  const { kv, running, waiting, config } = state;
  kv.checkInvariants();
  checkQueues(state);
  const holders = new Map<number, Sequence<S>[]>();
  let numReserved = 0;
  for (const seq of running) {
    checkRunningSeq(state, seq);
    if (!seq.request.isForked) numReserved += seq.request.n - 1;
    for (const id of seq.blockIds) {
      const list = holders.get(id);
      if (list === undefined) holders.set(id, [seq]);
      else list.push(seq);
    }
  }
  for (const seq of waiting) {
    invariant(seq.blockIds.length === 0, "waiting sequences hold no blocks", `seq ${seq.id}`);
    invariant(seq.numComputedTokens === 0, "waiting sequences computed nothing", `seq ${seq.id}`);
  }
  invariant(numReserved === state.numReservedSeqs, "reserved slots match unforked parents");
  invariant(running.length + numReserved <= config.maxNumSeqs, "running fits maxNumSeqs");
  for (let id = 0; id < config.numBlocks; id++) {
    const list = holders.get(id) ?? [];
    const count = kv.pool.refCount(asBlockId(id));
    invariant(count === list.length, "reference counts equal references held", `block ${id}`);
    if (list.length > 1) checkSharedBlock(state, id, list);
  }
}

function checkQueues<S>(state: EngineState<S>): void {
  const { running, waiting, requests } = state;
  for (let i = 1; i < running.length; i++) {
    invariant(compareSeqs(running[i - 1]!, running[i]!) < 0, "running is sorted");
  }
  for (let i = 1; i < waiting.length; i++) {
    invariant(compareSeqs(waiting[i - 1]!, waiting[i]!) < 0, "waiting is sorted");
  }
  let numLive = 0;
  for (const request of requests.values()) {
    const live = request.seqs.filter((seq) => seq.status !== "finished").length;
    invariant(live === request.numUnfinishedSeqs && live > 0, "unfinished requests have live seqs");
    numLive += live;
  }
  invariant(numLive === running.length + waiting.length, "every live sequence is queued once");
  for (const seq of running) invariant(seq.status === "running", "running status matches");
  for (const seq of waiting) invariant(seq.status === "waiting", "waiting status matches");
}

function checkRunningSeq<S>(state: EngineState<S>, seq: Sequence<S>): void {
  const bs = state.config.blockSize;
  const where = `seq ${seq.id}`;
  invariant(seq.numComputedTokens < seq.targetLen, "running sequences have work left", where);
  invariant(seq.tokenIds.length <= state.config.maxModelLen, "sequences fit maxModelLen", where);
  invariant(seq.blockIds.length * bs >= seq.numComputedTokens, "computed tokens have slots", where);
  invariant(
    seq.blockIds.length <= Math.ceil((seq.tokenIds.length + seq.numAheadTokens) / bs),
    "no block beyond the known tokens",
    where,
  );
  invariant(new Set(seq.blockIds).size === seq.blockIds.length, "no block twice in a table", where);
  invariant(seq.numCachedBlocks * bs <= seq.numComputedTokens, "cached blocks are computed", where);
  for (let j = 0; j < seq.numCachedBlocks; j++) {
    invariant(state.kv.pool.isCached(seq.blockIds[j]!), "registered blocks stay cached", where);
  }
  const node = seq.cacheNode;
  invariant((node === null) === (seq.numCachedBlocks === 0), "a cache chain iff cached", where);
  if (node !== null) {
    invariant(node.blockIds.includes(seq.blockIds[seq.numCachedBlocks - 1]!), "chain tip", where);
    invariant(state.kv.cache.isAttached(node), "the chain tip is in the tree", where);
  }
}

/** A block held twice is a cached full block, or a fork's partial block within one request. */
function checkSharedBlock<S>(state: EngineState<S>, id: number, holders: Sequence<S>[]): void {
  const first = holders[0]!;
  const index = first.blockIds.indexOf(asBlockId(id));
  for (const seq of holders) {
    invariant(seq.blockIds.indexOf(asBlockId(id)) === index, "shared blocks at one index", `${id}`);
  }
  if (state.kv.pool.isCached(asBlockId(id))) return;
  const isOneRequest = holders.every((seq) => seq.request === first.request);
  invariant(isOneRequest, "uncached blocks are shared only by forks", `block ${id}`);
}
