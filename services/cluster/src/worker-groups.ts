/**
 * The worker processes of a cluster (ADR 0018): `dataParallelSize` groups (router replicas),
 * each of `tensorParallelSize` ranks. Rank 0 of a group registers with the router as the
 * group's replica and forwards every step to the other ranks through the group's shared-memory
 * segment; ranks > 0 never talk to the router.
 */
export interface WorkerGroupLayout {
  readonly tensorParallelSize: number;
  readonly dataParallelSize: number;
}

export interface WorkerProcessSpec {
  /** Supervisor name: "worker" for a single worker, else worker-<group>[-<rank>]. */
  readonly name: string;
  readonly replicaId: string;
  readonly rank: number;
  /** Worker flags for the group (empty for a single worker: the defaults). */
  readonly args: readonly string[];
}

/** Validates T and D (integers ≥ 1) and lists every worker process, group by group. */
export function workerProcessSpecs(
  layout: WorkerGroupLayout,
  clusterId: string,
): WorkerProcessSpec[] {
  const { tensorParallelSize: t, dataParallelSize: d } = layout;
  for (const [flag, n] of [
    ["--tensor-parallel-size", t],
    ["--data-parallel-size", d],
  ] as const) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected an integer ≥ 1`);
  }
  if (t === 1 && d === 1) return [{ name: "worker", replicaId: "replica-0", rank: 0, args: [] }];
  const specs: WorkerProcessSpec[] = [];
  for (let g = 0; g < d; g++) {
    const replicaId = `replica-${g}`;
    for (let rank = 0; rank < t; rank++) {
      const args = ["--replica-id", replicaId];
      if (t > 1) {
        args.push("--tensor-parallel-size", String(t), "--tp-rank", String(rank));
        args.push("--tp-group", `${clusterId}-${replicaId}`);
      }
      specs.push({ name: t > 1 ? `worker-${g}-${rank}` : `worker-${g}`, replicaId, rank, args });
    }
  }
  return specs;
}
