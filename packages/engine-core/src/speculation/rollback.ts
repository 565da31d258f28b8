import type { KvCacheManager, KvSeq } from "../kv-cache-manager";

/**
 * Releases the blocks a verification step allocated for rejected drafts: after commit the
 * sequence keeps ceil(numComputedTokens / blockSize) blocks, the rest go back to the pool at once
 * (last first). Returns how many blocks were released. The released blocks were allocated in the
 * verification step itself, so they are private (never shared, never cached).
 */
export function releaseRejectedSlots(kv: KvCacheManager, seq: KvSeq): number {
  const numKept = Math.ceil(seq.numComputedTokens / kv.blockSize);
  const numReleased = seq.blockIds.length - numKept;
  if (numReleased <= 0) return 0;
  const released = seq.blockIds.splice(numKept);
  kv.pool.release(released.reverse());
  return numReleased;
}
