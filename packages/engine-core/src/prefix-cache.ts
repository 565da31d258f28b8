import { InvariantError, invariant } from "./errors";
import type { AdapterId, BlockId } from "./ids";

/**
 * One full block's worth of tokens in the prefix tree. A node's identity is its whole chain: the
 * namespace root (adapter + cache salt), then each ancestor block's token ids. That chain is the
 * block's cache key, compared exactly (no hash, so no collisions across prompts or tenants).
 */
export interface CacheNode {
  /** null only for a namespace root. */
  readonly parent: CacheNode | null;
  /** The block's token ids joined by ","; for a root, the namespace. */
  readonly key: string;
  children: Map<string, CacheNode> | null;
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
  /** [numBlocks] the node each cached block is registered under. */
  private readonly blockToNode: (CacheNode | null)[];
  private numEntries = 0;

  constructor(numBlocks: number, blockSize: number) {
    this.blockSize = blockSize;
    this.blockToNode = new Array<CacheNode | null>(numBlocks).fill(null);
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
      const child: CacheNode | undefined = node.children?.get(
        blockKey(tokenIds, j * blockSize, blockSize),
      );
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
    const key = blockKey(tokenIds, start, this.blockSize);
    let node = from.children?.get(key);
    if (node === undefined) {
      node = { parent: from, key, children: null, blockIds: [] };
      from.children ??= new Map();
      from.children.set(key, node);
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
      if (at.parent.children?.get(at.key) !== at) return false;
      at = at.parent;
    }
    return this.roots.get(at.key) === at;
  }

  /** Throws InvariantError unless tree and block index agree and no useless node is kept. */
  checkInvariants(isCachedInPool: (id: BlockId) => boolean): void {
    let numSeen = 0;
    const visit = (node: CacheNode): void => {
      const hasChildren = node.children !== null && node.children.size > 0;
      invariant(hasChildren || node.blockIds.length > 0, "useless cache nodes are pruned");
      for (const id of node.blockIds) {
        invariant(this.blockToNode[id] === node, "the block index points at the node", `${id}`);
        invariant(isCachedInPool(id), "cached blocks are flagged in the pool", `block ${id}`);
        numSeen++;
      }
      for (const [key, child] of node.children ?? []) {
        invariant(child.parent === node && child.key === key, "tree links are consistent");
        visit(child);
      }
    };
    for (const root of this.roots.values()) {
      invariant(root.blockIds.length === 0, "roots hold no blocks");
      visit(root);
    }
    invariant(numSeen === this.numEntries, "every registered block is in the tree");
    const numIndexed = this.blockToNode.filter((node) => node !== null).length;
    invariant(numIndexed === this.numEntries, "the block index has no stale entries");
  }

  // ---- internal helpers ----

  private rootOf(namespace: string): CacheNode {
    let root = this.roots.get(namespace);
    if (root === undefined) {
      root = { parent: null, key: namespace, children: null, blockIds: [] };
      this.roots.set(namespace, root);
    }
    return root;
  }

  private prune(node: CacheNode): void {
    let at: CacheNode = node;
    while (at.blockIds.length === 0 && (at.children === null || at.children.size === 0)) {
      const parent = at.parent;
      if (parent === null) {
        this.roots.delete(at.key);
        return;
      }
      parent.children?.delete(at.key);
      at = parent;
    }
  }
}

/** The exact key of one block of tokens. */
function blockKey(tokenIds: readonly number[], start: number, blockSize: number): string {
  let key = String(tokenIds[start]);
  for (let i = 1; i < blockSize; i++) key += "," + tokenIds[start + i];
  return key;
}
