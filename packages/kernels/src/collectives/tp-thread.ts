import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { loadModelShard } from "@kiln/model";
import type { StepInput } from "../backend";
import { CpuModelRunner, type CpuModelRunnerOptions } from "../cpu/model-runner";
import type { Collective } from "./collective";
import { isGroupLost } from "./collective";
import { ShmGroup } from "./shm-group";
import { TcpRing } from "./tcp-ring";
import { TcpStepFollower, TcpStepLeader } from "./tcp-steps";
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
  /**
   * Between hosts: host:port of every rank (rank r listens on entry r's port and connects to
   * entry r + 1), and the group uses the TCP ring instead of shared memory. Absent: shm.
   */
  readonly tcpPeers?: readonly string[];
}

/** Rank 0's side of the step protocol, whatever the transport. */
export interface StepLeader {
  sendStep(input: StepInput): void;
  markBroken(): void;
}

/** A rank > 0's side. */
interface StepFollower {
  readonly isInGroup: boolean;
  tryReceiveStep(): StepInput | null;
}

export interface TensorParallelRank {
  readonly runner: CpuModelRunner;
  readonly rank: number;
  /** Rank 0 only. */
  readonly leader: StepLeader | null;
  /** Ranks > 0 only. */
  readonly follower: StepFollower | null;
  /** A TCP ring cannot be re-formed: a failure ends the thread (the process restarts). */
  readonly isRestartOnFailure: boolean;
}

/** Connecting a TCP ring waits this long for every rank to start (they load at their pace). */
const TCP_CONNECT_MS = 600_000;

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
  const build = (collective: Collective) =>
    new CpuModelRunner(plan.config, weights, { ...opts, collective });
  const isLeader = tp.rank === 0;
  if (tp.tcpPeers !== undefined) {
    const ring = connectRing(tp, tp.tcpPeers);
    return {
      runner: build(ring),
      rank: tp.rank,
      leader: isLeader ? new TcpStepLeader(ring) : null,
      follower: isLeader ? null : new TcpStepFollower(ring),
      isRestartOnFailure: true,
    };
  }
  let group = ShmGroup.tryOpen(tp);
  while (group === null) {
    await sleep(OPEN_POLL_MS);
    group = ShmGroup.tryOpen(tp);
  }
  return {
    runner: build(group),
    rank: tp.rank,
    leader: isLeader ? new TensorParallelLeader(group) : null,
    follower: isLeader ? null : new TensorParallelFollower(group),
    isRestartOnFailure: false,
  };
}

function connectRing(tp: TensorParallelInit, peers: readonly string[]): TcpRing {
  if (peers.length !== tp.size) {
    throw new Error(`tensor parallelism: ${peers.length} TCP peers for ${tp.size} ranks`);
  }
  const own = peers[tp.rank]!;
  return TcpRing.connect({
    rank: tp.rank,
    size: tp.size,
    listenPort: Number(own.slice(own.lastIndexOf(":") + 1)),
    next: peers[(tp.rank + 1) % tp.size]!,
    timeoutMs: tp.timeoutMs,
    connectTimeoutMs: TCP_CONNECT_MS,
  });
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
  const follower = rank.follower!;
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
        `tensor-parallel rank ${rank.rank}: ${message}${isGroupLost(err) ? "" : " (step failed)"}`,
      );
      if (rank.isRestartOnFailure && isGroupLost(err)) process.exit(1); // this thread: see main
      await sleep(OPEN_POLL_MS);
    }
  }
}
