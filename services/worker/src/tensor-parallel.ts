import { rmSync } from "node:fs";
import { type Backend, kvBytesPerBlock, peekShmGroup, shmGroupName } from "@kiln/kernels";
import { type LlamaConfig, planTensorShard } from "@kiln/model";
import type { WorkerOptions } from "./options";

/**
 * KV blocks of one rank: `--kv-cache-memory` is per rank, and a rank holds only its KV heads,
 * so every rank of a group gets the same number of blocks (the router's one block table), of
 * `--kv-cache-dtype` elements.
 * Throws the shard plan's start-up error when the heads cannot be split.
 */
export function numBlocksPerRank(config: LlamaConfig, opts: WorkerOptions): number {
  const local =
    opts.tensorParallelSize === 1
      ? config
      : planTensorShard(config, opts.tpRank, opts.tensorParallelSize).config;
  return Math.floor(opts.kvCacheBytes / kvBytesPerBlock(local, opts.blockSize, opts.kvCacheDtype));
}

/** Why the group cannot compute (a rank's process is gone or never started), or null. */
export function groupDeadReason(groupId: string): string | null {
  const ranks = peekShmGroup(groupId);
  if (ranks === null) return "the tensor-parallel group's segment does not exist yet";
  const missing = ranks.findIndex((r) => !r.isAlive);
  return missing < 0 ? null : `tensor-parallel rank ${missing} is not running`;
}

/**
 * Rank 0's backend as the Worker service sees it: dead (Health NOT_SERVING, so the router
 * stops routing to the group and reconnects once it answers again) while any rank is missing.
 */
export function withGroupHealth(backend: Backend, groupId: string): Backend {
  return {
    info: backend.info,
    step: (input) => backend.step(input),
    dispose: async () => {
      await backend.dispose();
      rmSync(`/dev/shm${shmGroupName(groupId)}`, { force: true }); // Linux: the segment's name
    },
    deadReason: () => backend.deadReason?.() ?? groupDeadReason(groupId),
  };
}
