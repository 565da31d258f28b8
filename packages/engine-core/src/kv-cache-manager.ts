import { BlockPool } from "./block-pool";
import { InvariantError } from "./errors";
import type { BlockId } from "./ids";
import { type CacheNode, PrefixCache } from "./prefix-cache";

/**
 * The part of a sequence's state the KV cache manager reads and writes. The manager mutates
 * `numComputedTokens` only in `tryAdmit` (cache hits); the scheduler advances it at commit.
 */
export interface KvSeq {
  /** Every known token: prompt then generated. */
  readonly tokenIds: readonly number[];
  /** Prefix-cache namespace (adapter + cache salt), see `cacheNamespace`. */
  readonly namespace: string;
  /** Tokens whose K/V are in the sequence's blocks. */
  numComputedTokens: number;
  /** Block table: blockIds[j] holds positions j·blockSize … (j+1)·blockSize − 1. */
  blockIds: BlockId[];
  /** Leading blocks already registered in (or found in) the prefix cache. */
  numCachedBlocks: number;
  /** Cache node of block numCachedBlocks − 1; null while numCachedBlocks is 0. */
  cacheNode: CacheNode | null;
}

/** Copy-on-write: the worker copies block `src` into `dst` before the forward pass. */
export interface BlockCopy {
  readonly src: BlockId;
  readonly dst: BlockId;
}

/** What `tryAdmit` gave a waiting sequence. */
export interface Admission {
  /** Prompt tokens found in the prefix cache (whole blocks). */
  readonly numCachedTokens: number;
  /** Tokens to compute in this step; slots are allocated for them. */
  readonly numNewTokens: number;
}

/** What `tryAllocateSlots` changed in a running sequence's block table. */
export interface SlotAllocation {
  /** Blocks appended to the table. */
  readonly numNewBlocks: number;
  /** Set when the block about to be written was shared and got replaced by a private copy. */
  readonly copy: BlockCopy | null;
}

const NO_NEW_SLOTS: SlotAllocation = Object.freeze({ numNewBlocks: 0, copy: null });

export interface PrefixCacheStats {
  /** Tokens looked up at admission (vLLM's prefix_cache_queries). */
  readonly numQueryTokens: number;
  /** Of those, tokens found cached (vLLM's prefix_cache_hits). */
  readonly numHitTokens: number;
}

/**
 * Block tables of sequences over one BlockPool and PrefixCache (vLLM v1's KVCacheManager). Every
 * allocating method is all or nothing: it returns null, changing nothing, when blocks are short.
 */
export class KvCacheManager {
  readonly pool: BlockPool;
  readonly cache: PrefixCache;
  readonly blockSize: number;
  private numQueryTokens = 0;
  private numHitTokens = 0;

  constructor(numBlocks: number, blockSize: number) {
    this.blockSize = blockSize;
    this.cache = new PrefixCache(numBlocks, blockSize);
    this.pool = new BlockPool({ numBlocks, blockSize, onEvict: (id) => this.cache.evict(id) });
  }

  // ---- public API ----

  get stats(): PrefixCacheStats {
    return { numQueryTokens: this.numQueryTokens, numHitTokens: this.numHitTokens };
  }

  /**
   * Read-only probe: how many of `tokenIds` a sequence computing all of them would find cached.
   * Always leaves at least one token to compute; counts no statistics, touches no LRU order.
   */
  prefixMatchLen(tokenIds: readonly number[], namespace: string): number {
    const match = this.cache.match(tokenIds, namespace, this.maxHitBlocks(tokenIds.length));
    return match.blockIds.length * this.blockSize;
  }

  /**
   * Admits a sequence holding no blocks: takes its longest cached prefix (whole blocks, leaving at
   * least one of its first `targetLen` tokens to compute) and allocates slots for the next
   * min(rest, maxNewTokens) tokens. Sets blockIds, numComputedTokens and the cache chain.
   * Returns null, changing nothing, when blocks are short.
   */
  tryAdmit(seq: KvSeq, targetLen: number, maxNewTokens: number): Admission | null {
    if (seq.blockIds.length !== 0) throw new InvariantError("admitted sequences hold no blocks");
    const bs = this.blockSize;
    const match = this.cache.match(seq.tokenIds, seq.namespace, this.maxHitBlocks(targetLen));
    const numCachedTokens = match.blockIds.length * bs;
    const numNewTokens = Math.min(targetLen - numCachedTokens, maxNewTokens);
    const numNewBlocks = Math.ceil((numCachedTokens + numNewTokens) / bs) - match.blockIds.length;
    // Hit blocks with no references leave the free queue when shared: they count against it.
    let numRevived = 0;
    for (const id of match.blockIds) if (this.pool.refCount(id) === 0) numRevived++;
    if (numNewBlocks + numRevived > this.pool.numFree) return null;
    this.pool.share(match.blockIds);
    const newIds = this.pool.tryAllocate(numNewBlocks);
    if (newIds === null) throw new InvariantError("admission checked capacity first");
    seq.blockIds = match.blockIds.concat(newIds);
    seq.numComputedTokens = numCachedTokens;
    seq.numCachedBlocks = match.blockIds.length;
    seq.cacheNode = match.lastNode;
    this.numQueryTokens += seq.tokenIds.length;
    this.numHitTokens += numCachedTokens;
    return { numCachedTokens, numNewTokens };
  }

  /**
   * Slots for the next `numNewTokens` tokens of a running sequence: appends blocks as needed, and
   * copies on write when the block about to be written is shared (a fork's partial block).
   * Returns null, changing nothing, when blocks are short.
   */
  tryAllocateSlots(seq: KvSeq, numNewTokens: number): SlotAllocation | null {
    const bs = this.blockSize;
    const numNewBlocks = Math.max(
      0,
      Math.ceil((seq.numComputedTokens + numNewTokens) / bs) - seq.blockIds.length,
    );
    const writeIndex = Math.floor(seq.numComputedTokens / bs);
    const writeBlock = seq.blockIds[writeIndex];
    const shared =
      writeBlock !== undefined && this.pool.refCount(writeBlock) > 1 ? writeBlock : null;
    const numNeeded = numNewBlocks + (shared === null ? 0 : 1);
    // Most decode steps need nothing: answer without allocating.
    if (numNeeded === 0) return NO_NEW_SLOTS;
    const ids = this.pool.tryAllocate(numNeeded);
    if (ids === null) return null;
    let copy: BlockCopy | null = null;
    if (shared !== null) {
      if (this.pool.isCached(shared)) {
        throw new InvariantError("cached (full) blocks are never written", `block ${shared}`);
      }
      copy = { src: shared, dst: ids[0]! };
      seq.blockIds[writeIndex] = copy.dst;
      this.pool.release([shared]);
    }
    for (let i = shared === null ? 0 : 1; i < ids.length; i++) seq.blockIds.push(ids[i]!);
    return { numNewBlocks, copy };
  }

  /** After a step computed tokens: registers the sequence's newly full blocks in the cache. */
  registerComputed(seq: KvSeq): void {
    const bs = this.blockSize;
    const numFull = Math.floor(seq.numComputedTokens / bs);
    while (seq.numCachedBlocks < numFull) {
      const index = seq.numCachedBlocks;
      const id = seq.blockIds[index]!;
      seq.cacheNode = this.cache.insert(seq.cacheNode, seq.namespace, seq.tokenIds, index * bs, id);
      this.pool.markCached(id);
      seq.numCachedBlocks = index + 1;
    }
  }

  /** Gives `child` the parent's whole block table and progress, sharing every block. */
  fork(parent: KvSeq, child: KvSeq): void {
    if (child.blockIds.length !== 0) throw new InvariantError("forked sequences start empty");
    child.blockIds = parent.blockIds.slice();
    this.pool.share(child.blockIds);
    child.numComputedTokens = parent.numComputedTokens;
    child.numCachedBlocks = parent.numCachedBlocks;
    child.cacheNode = parent.cacheNode;
  }

  /** Drops every block reference of the sequence, last block first (evicted before its prefix). */
  free(seq: KvSeq): void {
    this.pool.release(seq.blockIds.slice().reverse());
    seq.blockIds = [];
    seq.numComputedTokens = 0;
    seq.numCachedBlocks = 0;
    seq.cacheNode = null;
  }

  checkInvariants(): void {
    this.pool.checkInvariants();
    this.cache.checkInvariants((id) => this.pool.isCached(id));
  }

  // ---- internal helpers ----

  /** Cache hits stop before the block holding token targetLen − 1, which must be computed. */
  private maxHitBlocks(targetLen: number): number {
    return Math.max(0, Math.floor((targetLen - 1) / this.blockSize));
  }
}
