import { InvariantError, invariant } from "./errors";
import { asBlockId, type BlockId } from "./ids";

export interface BlockPoolOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  /**
   * Called when a free block whose content is still cached is handed out again, so the prefix
   * cache can forget it. Runs inside `tryAllocate`, before the block is returned.
   */
  readonly onEvict?: (id: BlockId) => void;
}

/**
 * Paged KV blocks with reference counts: the router's accounting of the worker's KV memory.
 *
 * A block is free when no sequence references it. Free blocks wait in one queue:
 * - blocks without cached content sit at its head and are handed out first;
 * - blocks whose content is registered in the prefix cache join its tail when their count drops
 *   to zero, so cached content is evicted least recently used first, and `share` can revive it
 *   until then.
 *
 * Never throws for lack of capacity (`tryAllocate` returns null); throws InvariantError on misuse
 * (an id out of range, releasing a free block).
 */
export class BlockPool {
  readonly numBlocks: number;
  readonly blockSize: number;
  private readonly onEvict: (id: BlockId) => void;
  /** [numBlocks] references held by sequences; 0 means free (possibly still cached). */
  private readonly refCounts: Int32Array;
  /** [numBlocks] 1 while the block's content is registered in the prefix cache. */
  private readonly cachedFlags: Uint8Array;
  /**
   * [numBlocks + 1] the free queue as a doubly linked list over block ids. Index numBlocks is a
   * sentinel: next[sentinel] is the head (handed out first), prev[sentinel] the tail.
   */
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private numFreeBlocks: number;

  constructor(options: BlockPoolOptions) {
    const { numBlocks, blockSize } = options;
    invariant(Number.isInteger(numBlocks) && numBlocks >= 1, "numBlocks is a positive integer");
    invariant(Number.isInteger(blockSize) && blockSize >= 1, "blockSize is a positive integer");
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.onEvict = options.onEvict ?? (() => {});
    this.refCounts = new Int32Array(numBlocks);
    this.cachedFlags = new Uint8Array(numBlocks);
    this.next = new Int32Array(numBlocks + 1);
    this.prev = new Int32Array(numBlocks + 1);
    // Initial queue 0, 1, …, numBlocks-1: a fresh pool hands out ascending ids.
    for (let i = 0; i <= numBlocks; i++) {
      this.next[i] = (i + 1) % (numBlocks + 1);
      this.prev[i] = (i + numBlocks) % (numBlocks + 1);
    }
    this.numFreeBlocks = numBlocks;
  }

  // ---- public API ----

  /** Blocks with no references, cached or not: what `tryAllocate` can hand out. */
  get numFree(): number {
    return this.numFreeBlocks;
  }

  /** Blocks referenced by at least one sequence. */
  get numUsed(): number {
    return this.numBlocks - this.numFreeBlocks;
  }

  refCount(id: BlockId): number {
    this.assertValid(id);
    return this.refCounts[id]!;
  }

  /** Whether the block's content is registered in the prefix cache. */
  isCached(id: BlockId): boolean {
    this.assertValid(id);
    return this.cachedFlags[id] === 1;
  }

  /**
   * All or nothing: `numBlocks` blocks from the head of the free queue, each with one reference,
   * or null (nothing changed) when fewer are free. Cached blocks handed out are evicted first.
   * The caller owns the returned array.
   */
  tryAllocate(numBlocks: number): BlockId[] | null {
    if (numBlocks > this.numFreeBlocks) return null;
    const ids: BlockId[] = new Array(numBlocks);
    const sentinel = this.numBlocks;
    for (let i = 0; i < numBlocks; i++) {
      const id = this.next[sentinel]!;
      this.unlink(id);
      if (this.cachedFlags[id] === 1) {
        this.cachedFlags[id] = 0;
        this.onEvict(asBlockId(id));
      }
      this.refCounts[id] = 1;
      ids[i] = asBlockId(id);
    }
    this.numFreeBlocks -= numBlocks;
    return ids;
  }

  /** One more reference to each block (a prefix-cache hit or a fork); revives free cached blocks. */
  share(ids: readonly BlockId[]): void {
    for (const id of ids) {
      this.assertValid(id);
      if (this.refCounts[id] === 0) {
        if (this.cachedFlags[id] !== 1) {
          throw new InvariantError("only cached blocks are shared while free", `block ${id}`);
        }
        this.unlink(id);
        this.numFreeBlocks--;
      }
      this.refCounts[id]!++;
    }
  }

  /**
   * One reference less per block, in the order given. A block that reaches zero joins the free
   * queue: at the tail when cached (so pass a sequence's blocks last-first to have its tail
   * evicted before its prefix), at the head otherwise.
   */
  release(ids: readonly BlockId[]): void {
    for (const id of ids) {
      this.assertValid(id);
      const count = this.refCounts[id]!;
      if (count <= 0) throw new InvariantError("a released block is referenced", `block ${id}`);
      this.refCounts[id] = count - 1;
      if (count > 1) continue;
      if (this.cachedFlags[id] === 1) this.linkBefore(id, this.numBlocks);
      else this.linkBefore(id, this.next[this.numBlocks]!);
      this.numFreeBlocks++;
    }
  }

  /** Marks a referenced block's content as registered in the prefix cache. */
  markCached(id: BlockId): void {
    this.assertValid(id);
    if (this.refCounts[id]! <= 0) {
      throw new InvariantError("only referenced blocks become cached", `block ${id}`);
    }
    this.cachedFlags[id] = 1;
  }

  /** The free queue from head to tail: the order in which blocks would be handed out. */
  freeOrder(): BlockId[] {
    const ids: BlockId[] = [];
    for (let id = this.next[this.numBlocks]!; id !== this.numBlocks; id = this.next[id]!) {
      ids.push(asBlockId(id));
    }
    return ids;
  }

  /** Throws InvariantError unless the queue holds exactly the unreferenced blocks, uncached first. */
  checkInvariants(): void {
    const isQueued = new Uint8Array(this.numBlocks);
    let numQueued = 0;
    let hasSeenCached = false;
    for (let id = this.next[this.numBlocks]!; id !== this.numBlocks; id = this.next[id]!) {
      invariant(numQueued < this.numBlocks && isQueued[id] === 0, "the free queue has no cycle");
      invariant(this.next[this.prev[id]!] === id, "free-queue links are symmetric", `block ${id}`);
      invariant(this.refCounts[id] === 0, "queued blocks are unreferenced", `block ${id}`);
      const isCached = this.cachedFlags[id] === 1;
      invariant(
        isCached || !hasSeenCached,
        "uncached free blocks precede cached ones",
        `block ${id}`,
      );
      hasSeenCached ||= isCached;
      isQueued[id] = 1;
      numQueued++;
    }
    invariant(numQueued === this.numFreeBlocks, "numFree counts the free queue");
    for (let id = 0; id < this.numBlocks; id++) {
      const count = this.refCounts[id]!;
      invariant(count >= 0, "reference counts are non-negative", `block ${id}`);
      invariant((count === 0) === (isQueued[id] === 1), "free iff unreferenced", `block ${id}`);
    }
  }

  // ---- internal helpers ----

  private assertValid(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < this.numBlocks)) {
      throw new InvariantError("block ids are in range", `block ${id} of ${this.numBlocks}`);
    }
  }

  private unlink(id: number): void {
    const before = this.prev[id]!;
    const after = this.next[id]!;
    this.next[before] = after;
    this.prev[after] = before;
  }

  /** Inserts `id` just before `at` (a queued block or the sentinel). */
  private linkBefore(id: number, at: number): void {
    const before = this.prev[at]!;
    this.next[before] = id;
    this.prev[id] = before;
    this.next[id] = at;
    this.prev[at] = id;
  }
}
