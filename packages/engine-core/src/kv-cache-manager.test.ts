import { describe, expect, it } from "vitest";
import { asAdapterId, asBlockId, type BlockId } from "./ids";
import { KvCacheManager, type KvSeq } from "./kv-cache-manager";
import { cacheNamespace } from "./prefix-cache";

const ids = (...values: number[]): BlockId[] => values.map(asBlockId);
const BASE = cacheNamespace(null, null);
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

function seq(tokenIds: number[], namespace = BASE): KvSeq {
  return {
    tokenIds,
    namespace,
    numComputedTokens: 0,
    blockIds: [],
    numCachedBlocks: 0,
    cacheNode: null,
  };
}

/** Admits and "computes" the whole sequence in one go, as a finished prefill would. */
function prefill(kv: KvCacheManager, s: KvSeq): void {
  const admission = kv.tryAdmit(s, s.tokenIds.length, 1 << 20);
  expect(admission).not.toBeNull();
  s.numComputedTokens = s.tokenIds.length;
  kv.registerComputed(s);
  kv.checkInvariants();
}

describe("KvCacheManager", () => {
  it("allocates exact block ids and registers full blocks only", () => {
    const kv = new KvCacheManager(8, 4);
    const a = seq(range(0, 10)); // blocks: [0..3] [4..7] [8, 9]
    prefill(kv, a);
    expect(a.blockIds).toEqual(ids(0, 1, 2));
    expect(a.numCachedBlocks).toBe(2);
    expect(kv.pool.isCached(asBlockId(2))).toBe(false);
    expect(kv.prefixMatchLen(range(0, 10), BASE)).toBe(8);
  });

  it("finds the longest cached prefix but always leaves one token to compute", () => {
    const kv = new KvCacheManager(8, 4);
    prefill(kv, seq(range(0, 12)));
    // 12 tokens cached in 3 blocks, but an identical prompt must recompute its last block.
    const b = seq(range(0, 12));
    expect(kv.tryAdmit(b, 12, 100)).toEqual({ numCachedTokens: 8, numNewTokens: 4 });
    expect(b.blockIds).toEqual(ids(0, 1, 3));
    // A longer prompt sharing 12 tokens reuses all three.
    const c = seq([...range(0, 12), 99]);
    expect(kv.tryAdmit(c, 13, 100)).toEqual({ numCachedTokens: 12, numNewTokens: 1 });
    expect(c.blockIds).toEqual(ids(0, 1, 2, 4));
    // A diverging second block stops the match after the first.
    expect(kv.prefixMatchLen([0, 1, 2, 3, 4, 5, 6, 42, 8], BASE)).toBe(4);
    expect(kv.stats).toEqual({ numQueryTokens: 12 + 12 + 13, numHitTokens: 8 + 12 });
    kv.checkInvariants();
  });

  it("keeps adapters and cache salts apart", () => {
    const kv = new KvCacheManager(8, 4);
    prefill(kv, seq(range(0, 9)));
    const tokens = range(0, 9);
    expect(kv.prefixMatchLen(tokens, cacheNamespace(asAdapterId("lora-a"), null))).toBe(0);
    expect(kv.prefixMatchLen(tokens, cacheNamespace(null, "tenant-1"))).toBe(0);
    expect(kv.prefixMatchLen(tokens, BASE)).toBe(8);
  });

  it("chains keys: equal tokens after a different parent do not match", () => {
    const kv = new KvCacheManager(8, 4);
    prefill(kv, seq([1, 1, 1, 1, 2, 2, 2, 2, 0]));
    expect(kv.prefixMatchLen([3, 3, 3, 3, 2, 2, 2, 2, 0], BASE)).toBe(0);
  });

  it("evicts cached free blocks least recently used first, tail blocks before prefixes", () => {
    const kv = new KvCacheManager(8, 4);
    const a = seq(range(0, 9)); // blocks 0, 1 full + 2 partial
    const b = seq(range(100, 109)); // blocks 3, 4 full + 5 partial
    prefill(kv, a);
    prefill(kv, b);
    kv.free(a);
    kv.free(b);
    // Partial blocks (uncached) first, then a's tail and prefix, then b's.
    expect(kv.pool.freeOrder()).toEqual(ids(5, 2, 6, 7, 1, 0, 4, 3));
    const c = seq(range(200, 220)); // needs 5 blocks: evicts 1 and 0 (a's whole chain)
    prefill(kv, c);
    expect(c.blockIds).toEqual(ids(5, 2, 6, 7, 1));
    expect(kv.prefixMatchLen(range(0, 9), BASE)).toBe(4); // block 0 still cached
    const d = seq([...range(200, 216), 1]); // needs 1 more block: evicts block 0
    prefill(kv, d);
    expect(d.blockIds).toEqual(ids(5, 2, 6, 7, 0));
    expect(kv.prefixMatchLen(range(0, 9), BASE)).toBe(0);
    expect(kv.prefixMatchLen(range(100, 109), BASE)).toBe(8);
  });

  it("returns null without side effects when blocks are short", () => {
    const kv = new KvCacheManager(8, 4);
    const a = seq(range(0, 20));
    prefill(kv, a); // 5 blocks
    const before = kv.pool.freeOrder();
    expect(kv.tryAdmit(seq(range(50, 70)), 20, 100)).toBeNull();
    expect(kv.pool.freeOrder()).toEqual(before);
    expect(kv.stats.numQueryTokens).toBe(20);
    // Cached hits that are free count against capacity: a revived hit takes a free slot.
    kv.free(a);
    const b = seq(range(0, 20));
    expect(kv.tryAdmit(b, 20, 100)).toEqual({ numCachedTokens: 16, numNewTokens: 4 });
    expect(b.blockIds).toEqual(ids(0, 1, 2, 3, 5));
    kv.checkInvariants();
  });

  it("copies a fork's shared partial block on write; the last holder writes in place", () => {
    const kv = new KvCacheManager(8, 4);
    const parent = seq(range(0, 7)); // prefilled 6 of 7 tokens: blocks 0 (full), 1 (2 of 4)
    expect(kv.tryAdmit(parent, 6, 100)).toEqual({ numCachedTokens: 0, numNewTokens: 6 });
    parent.numComputedTokens = 6;
    kv.registerComputed(parent);
    const child = seq(range(0, 7));
    kv.fork(parent, child);
    expect(kv.pool.refCount(asBlockId(1))).toBe(2);
    const childAlloc = kv.tryAllocateSlots(child, 1);
    expect(childAlloc).toEqual({ numNewBlocks: 0, copy: { src: 1, dst: 2 } });
    expect(child.blockIds).toEqual(ids(0, 2));
    expect(kv.tryAllocateSlots(parent, 1)).toEqual({ numNewBlocks: 0, copy: null });
    expect(parent.blockIds).toEqual(ids(0, 1));
    expect(kv.pool.refCount(asBlockId(0))).toBe(2);
    kv.checkInvariants();
  });

  it("allocates slots across a block boundary", () => {
    const kv = new KvCacheManager(8, 4);
    const a = seq(range(0, 3));
    kv.tryAdmit(a, 3, 100);
    a.numComputedTokens = 3;
    expect(kv.tryAllocateSlots(a, 6)).toEqual({ numNewBlocks: 2, copy: null });
    expect(a.blockIds).toEqual(ids(0, 1, 2));
    expect(kv.tryAllocateSlots(a, 30)).toBeNull();
    expect(a.blockIds).toEqual(ids(0, 1, 2));
  });
});
