import { InvariantError, invariant } from "./errors";
import type { AdapterId, BlockId } from "./ids";

/**
 * One full block's worth of tokens in the prefix tree. A node's identity is its whole chain: the
 * namespace root (adapter + cache salt), then each ancestor block's token ids. That chain is the
 * block's cache key, compared exactly (no hash, so no collisions across prompts or tenants).
 */
export interface CacheNode {
  /** Unique and never reused: edge keys name the parent by id. */
  readonly id: number;
  /** null only for a namespace root. */
  readonly parent: CacheNode | null;
  /** The edge key (parent id + the block's token ids); for a root, the namespace. */
  readonly key: string;
  numChildren: number;
  /**
   * Blocks holding this node's KV: usually one, more when sequences computed the same prefix
   * concurrently. Lookups use the first. Empty when all were evicted but descendants remain.
   */
  readonly blockIds: BlockId[];
}

/** The longest cached chain found by `match`. */
export interface PrefixMatch {
  /** One block per matched block of tokens, from the first; owned by the caller. */
  readonly blockIds: BlockId[];
  /** Node of the last matched block; null when nothing matched. */
  readonly lastNode: CacheNode | null;
}

/** The namespace that keeps prefixes of different adapters and tenants apart. */
export function cacheNamespace(adapterId: AdapterId | null, cacheSalt: string | null): string {
  return JSON.stringify([adapterId, cacheSalt]);
}

/**
 * Prefix cache over full KV blocks, shaped as a radix tree with one block of tokens per edge
 * (SGLang's radix cache, keyed by namespace). It only indexes: reference counts and eviction
 * order live in the BlockPool, which calls `evict` when it hands a cached block out again.
 */
export class PrefixCache {
  readonly blockSize: number;
  private readonly roots = new Map<string, CacheNode>();
  /** Every non-root node by its edge key: one flat map instead of a children map per node. */
  private readonly edges = new Map<string, CacheNode>();
  /** [3 + 2 × blockSize] UTF-16 code units of the edge key being built. */
  private readonly keyUnits: number[];
  private nextNodeId = 0;
  /** [numBlocks] the node each cached block is registered under. */
  private readonly blockToNode: (CacheNode | null)[];
  private numEntries = 0;

  constructor(numBlocks: number, blockSize: number) {
    this.blockSize = blockSize;
    this.blockToNode = new Array<CacheNode | null>(numBlocks).fill(null);
    this.keyUnits = new Array<number>(3 + 2 * blockSize).fill(0);
  }

  // ---- public API ----

  /** Blocks currently registered. */
  get numCachedBlocks(): number {
    return this.numEntries;
  }

  /**
   * Read-only: the longest chain of cached blocks covering the first `maxNumBlocks` full blocks of
   * `tokenIds` in `namespace`. Changes neither the tree nor any eviction order.
   */
  match(tokenIds: readonly number[], namespace: string, maxNumBlocks: number): PrefixMatch {
    const blockSize = this.blockSize;
    const numBlocks = Math.min(maxNumBlocks, Math.floor(tokenIds.length / blockSize));
    const blockIds: BlockId[] = [];
    let node: CacheNode | undefined = this.roots.get(namespace);
    let lastNode: CacheNode | null = null;
    for (let j = 0; j < numBlocks && node !== undefined; j++) {
      const child = this.edges.get(this.edgeKey(node, tokenIds, j * blockSize));
      if (child === undefined || child.blockIds.length === 0) break;
      blockIds.push(child.blockIds[0]!);
      lastNode = child;
      node = child;
    }
    return { blockIds, lastNode };
  }

  /**
   * Registers `blockId` as holding tokenIds[start, start + blockSize) after the chain ending at
   * `parent` (null: the namespace root). Returns the block's node, the parent of the next block.
   * Throws InvariantError if the block is already registered.
   */
  insert(
    parent: CacheNode | null,
    namespace: string,
    tokenIds: readonly number[],
    start: number,
    blockId: BlockId,
  ): CacheNode {
    if (this.blockToNode[blockId] !== null) {
      throw new InvariantError("a block is cached under one key", `block ${blockId}`);
    }
    const from = parent ?? this.rootOf(namespace);
    const key = this.edgeKey(from, tokenIds, start);
    let node = this.edges.get(key);
    if (node === undefined) {
      node = { id: this.nextNodeId++, parent: from, key, numChildren: 0, blockIds: [] };
      this.edges.set(key, node);
      from.numChildren++;
    }
    node.blockIds.push(blockId);
    this.blockToNode[blockId] = node;
    this.numEntries++;
    return node;
  }

  /** Forgets a block (the pool is handing it out again); prunes nodes left without use. */
  evict(blockId: BlockId): void {
    const node = this.blockToNode[blockId];
    if (node == null) throw new InvariantError("evicted blocks are cached", `block ${blockId}`);
    node.blockIds.splice(node.blockIds.indexOf(blockId), 1);
    this.blockToNode[blockId] = null;
    this.numEntries--;
    this.prune(node);
  }

  /** The node a block is registered under, or null. */
  nodeOf(blockId: BlockId): CacheNode | null {
    return this.blockToNode[blockId] ?? null;
  }

  /** Whether `node` is still reachable from its namespace root (not pruned). */
  isAttached(node: CacheNode): boolean {
    let at = node;
    while (at.parent !== null) {
      if (this.edges.get(at.key) !== at) return false;
      at = at.parent;
    }
    return this.roots.get(at.key) === at;
  }

  /** Throws InvariantError unless tree and block index agree and no useless node is kept. */
  checkInvariants(isCachedInPool: (id: BlockId) => boolean): void {
    const numChildren = new Map<CacheNode, number>();
    let numSeen = 0;
    const check = (node: CacheNode): void => {
      invariant(node.numChildren > 0 || node.blockIds.length > 0, "useless cache nodes are pruned");
      for (const id of node.blockIds) {
        invariant(this.blockToNode[id] === node, "the block index points at the node", `${id}`);
        invariant(isCachedInPool(id), "cached blocks are flagged in the pool", `block ${id}`);
        numSeen++;
      }
    };
    for (const [key, node] of this.edges) {
      invariant(node.key === key && node.parent !== null, "edge keys match their nodes");
      invariant(this.isAttached(node.parent), "a node's parent is in the tree", key);
      numChildren.set(node.parent, (numChildren.get(node.parent) ?? 0) + 1);
      check(node);
    }
    for (const root of this.roots.values()) {
      invariant(root.blockIds.length === 0 && root.parent === null, "roots hold no blocks");
      check(root);
    }
    for (const [node, count] of numChildren) {
      invariant(node.numChildren === count, "child counts match the edges");
    }
    invariant(numSeen === this.numEntries, "every registered block is in the tree");
    const numIndexed = this.blockToNode.filter((node) => node !== null).length;
    invariant(numIndexed === this.numEntries, "the block index has no stale entries");
  }

  // ---- internal helpers ----

  private rootOf(namespace: string): CacheNode {
    let root = this.roots.get(namespace);
    if (root === undefined) {
      root = { id: this.nextNodeId++, parent: null, key: namespace, numChildren: 0, blockIds: [] };
      this.roots.set(namespace, root);
    }
    return root;
  }

  private prune(node: CacheNode): void {
    let at: CacheNode = node;
    while (at.blockIds.length === 0 && at.numChildren === 0) {
      const parent = at.parent;
      if (parent === null) {
        this.roots.delete(at.key);
        return;
      }
      this.edges.delete(at.key);
      parent.numChildren--;
      at = parent;
    }
  }

  /**
   * The exact edge key of the block tokenIds[start, start + blockSize) under `parent`: the parent's
   * id in 48 bits, then each token id in 32 bits, as UTF-16 code units (one flat string; the
   * units need not be valid text to key a Map).
   */
  private edgeKey(parent: CacheNode, tokenIds: readonly number[], start: number): string {
    const units = this.keyUnits;
    const id = parent.id;
    units[0] = id & 0xffff;
    units[1] = (id >>> 16) & 0xffff;
    units[2] = Math.floor(id / 2 ** 32) & 0xffff;
    for (let i = 0; i < this.blockSize; i++) {
      const token = tokenIds[start + i]!;
      units[3 + 2 * i] = token & 0xffff;
      units[4 + 2 * i] = token >>> 16;
    }
    return String.fromCharCode.apply(null, units);
  }
}
