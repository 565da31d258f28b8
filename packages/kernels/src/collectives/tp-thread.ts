import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { loadModelShard } from "@kiln/model";
import { CpuModelRunner, type CpuModelRunnerOptions } from "../cpu/model-runner";
import { isGroupLost } from "./collective";
import { ShmGroup } from "./shm-group";
import { TensorParallelFollower } from "./tp-follower";
import { TensorParallelLeader } from "./tp-leader";

/** Where a backend thread sits in a tensor-parallel group (ADR 0018). */
export interface TensorParallelInit {
  /** Names the shared-memory segment: the same for every rank of a group, unique per group. */
  readonly groupId: string;
  readonly rank: number;
  readonly size: number;
  /** A peer that does not arrive at a collective within this fails the step (WORKER_LOST). */
  readonly timeoutMs: number;
}

export interface TensorParallelRank {
  readonly runner: CpuModelRunner;
  readonly group: ShmGroup;
  /** Rank 0 only. */
  readonly leader: TensorParallelLeader | null;
}

const OPEN_POLL_MS = 50;

/**
 * Loads this rank's shard (only its byte ranges of model.safetensors) and opens the group's
 * segment: rank 0 creates it; the others wait for it to exist.
 */
export async function loadTensorParallelRank(
  modelDir: string,
  tp: TensorParallelInit,
  opts: CpuModelRunnerOptions,
): Promise<TensorParallelRank> {
  const rank = await buildRank(modelDir, tp, opts);
  // The unpacked shard (the gemm packed a copy) is garbage once buildRank's frame is gone: on
  // the next macrotask. Collecting it keeps a rank's RSS at its share of the weights.
  await sleep(0);
  collectGarbage();
  return rank;
}

async function buildRank(
  modelDir: string,
  tp: TensorParallelInit,
  opts: CpuModelRunnerOptions,
): Promise<TensorParallelRank> {
  const { plan, weights } = await loadModelShard(modelDir, tp.rank, tp.size);
  let group = ShmGroup.tryOpen(tp);
  while (group === null) {
    await sleep(OPEN_POLL_MS);
    group = ShmGroup.tryOpen(tp);
  }
  const runner = new CpuModelRunner(plan.config, weights, { ...opts, collective: group });
  return { runner, group, leader: tp.rank === 0 ? new TensorParallelLeader(group) : null };
}

/** A full collection in this thread (V8's gc, exposed for the call). */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

/**
 * A rank > 0's loop, forever: receive the step rank 0 forwards, run it. A broken group (a peer
 * died, rank 0 re-formed the group) is logged and the loop waits for the next epoch. Returns to
 * the event loop between waits so the thread can be terminated.
 */
export async function runFollowerLoop(rank: TensorParallelRank, log: (line: string) => void) {
  const follower = new TensorParallelFollower(rank.group);
  for (;;) {
    try {
      const input = follower.tryReceiveStep();
      if (input === null) {
        // Idle waits block in the addon (futex); before the group exists, poll gently.
        await sleep(follower.isInGroup ? 0 : OPEN_POLL_MS);
        continue;
      }
      rank.runner.step(input);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log(
        `tensor-parallel rank ${rank.group.rank}: ${message}${isGroupLost(err) ? "" : " (step failed)"}`,
      );
      await sleep(OPEN_POLL_MS);
    }
  }
}
