import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlockPool } from "./block-pool";
import { InvariantError } from "./errors";
import { asBlockId, type BlockId } from "./ids";

const ids = (...values: number[]): BlockId[] => values.map(asBlockId);

function tinyPool(evicted: number[] = []): BlockPool {
  return new BlockPool({ numBlocks: 8, blockSize: 4, onEvict: (id) => evicted.push(id) });
}

describe("BlockPool", () => {
  it("hands out ascending ids from a fresh pool, all or nothing", () => {
    const pool = tinyPool();
    expect(pool.tryAllocate(3)).toEqual(ids(0, 1, 2));
    expect(pool.tryAllocate(6)).toBeNull();
    expect(pool.numFree).toBe(5);
    expect(pool.tryAllocate(5)).toEqual(ids(3, 4, 5, 6, 7));
    expect(pool.tryAllocate(1)).toBeNull();
    expect(pool.tryAllocate(0)).toEqual([]);
    pool.checkInvariants();
  });

  it("reuses uncached blocks first, in the order released", () => {
    const pool = tinyPool();
    pool.tryAllocate(4);
    pool.release(ids(3, 2, 1, 0)); // last block first, as sequences release
    expect(pool.freeOrder()).toEqual(ids(0, 1, 2, 3, 4, 5, 6, 7));
    expect(pool.tryAllocate(2)).toEqual(ids(0, 1));
    pool.checkInvariants();
  });

  it("keeps cached blocks at the tail and evicts them least recently used first", () => {
    const evicted: number[] = [];
    const pool = tinyPool(evicted);
    pool.tryAllocate(8);
    for (const id of ids(0, 1, 2, 3)) pool.markCached(id);
    pool.release(ids(1, 0)); // a sequence holding 0, 1 finishes
    pool.release(ids(3, 2)); // then one holding 2, 3
    pool.release(ids(4)); // an uncached block goes to the head
    expect(pool.freeOrder()).toEqual(ids(4, 1, 0, 3, 2));
    expect(pool.tryAllocate(3)).toEqual(ids(4, 1, 0));
    expect(evicted).toEqual([1, 0]);
    expect(pool.isCached(asBlockId(0))).toBe(false);
    expect(pool.isCached(asBlockId(3))).toBe(true);
    pool.checkInvariants();
  });

  it("revives a free cached block on share and refreshes its recency on release", () => {
    const pool = tinyPool();
    pool.tryAllocate(8);
    for (const id of ids(0, 1)) pool.markCached(id);
    pool.release(ids(0, 1));
    pool.share(ids(0)); // a prefix-cache hit
    expect(pool.refCount(asBlockId(0))).toBe(1);
    expect(pool.freeOrder()).toEqual(ids(1));
    pool.release(ids(0));
    expect(pool.freeOrder()).toEqual(ids(1, 0));
    pool.checkInvariants();
  });

  it("counts references across shares and releases", () => {
    const pool = tinyPool();
    const [a] = pool.tryAllocate(1)!;
    pool.share([a!, a!]);
    expect(pool.refCount(a!)).toBe(3);
    pool.release([a!, a!]);
    expect(pool.numUsed).toBe(1);
    pool.release([a!]);
    expect(pool.numUsed).toBe(0);
    pool.checkInvariants();
  });

  it("throws InvariantError on misuse", () => {
    const pool = tinyPool();
    expect(() => pool.release(ids(0))).toThrow(InvariantError);
    expect(() => pool.share(ids(0))).toThrow(InvariantError); // free and uncached
    expect(() => pool.refCount(asBlockId(8))).toThrow(InvariantError);
    expect(() => pool.markCached(asBlockId(0))).toThrow(InvariantError);
  });

  it("agrees with a model under random operations", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("alloc" as const), n: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ kind: fc.constant("release" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("share" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("cache" as const), at: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const pool = tinyPool();
        const held: BlockId[] = []; // one entry per reference
        const cached = new Set<number>();
        for (const o of ops) {
          if (o.kind === "alloc") {
            const got = pool.tryAllocate(o.n);
            const numFree = 8 - new Set(held).size;
            expect(got === null).toBe(o.n > numFree);
            for (const id of got ?? []) {
              expect(held).not.toContain(id);
              cached.delete(id);
              held.push(id);
            }
          } else if (held.length > 0) {
            const id = held[o.at % held.length]!;
            if (o.kind === "release") {
              held.splice(o.at % held.length, 1);
              pool.release([id]);
            } else if (o.kind === "share") {
              held.push(id);
              pool.share([id]);
            } else {
              pool.markCached(id);
              cached.add(id);
            }
          }
          pool.checkInvariants();
          for (let id = 0; id < 8; id++) {
            const count = held.filter((h) => h === id).length;
            expect(pool.refCount(asBlockId(id))).toBe(count);
            expect(pool.isCached(asBlockId(id))).toBe(cached.has(id));
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
