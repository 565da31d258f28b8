import { resolve } from "node:path";
import { type ServiceProcess, startServiceProcess } from "@kiln/cluster";
import { REPO_ROOT, STORIES_DIR, waitFor } from "@kiln/test-support";
import { TestRouterClient } from "./router-client";

export type { ServiceProcess } from "@kiln/cluster";

/**
 * Starts `services/<name>/src/main.ts` with `args` as a real process and resolves once it
 * prints its `{"event":"listening"}` line (see `startServiceProcess`).
 */
export function startService(
  name: "router" | "worker" | "gateway",
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<ServiceProcess> {
  const script = resolve(REPO_ROOT, `services/${name}/src/main.ts`);
  return startServiceProcess(name, script, { args, cwd: REPO_ROOT, timeoutMs });
}

/** Starts a router on an ephemeral port (`--port 0`) with `args` after it. */
export function startRouter(args: readonly string[] = []): Promise<ServiceProcess> {
  return startService("router", ["--port", "0", ...args]);
}

/**
 * Starts a stories260K worker that registers with the router at `routerPort`. A `null`
 * `replicaId` leaves the worker's default; `extraArgs` follow (e.g. `--kv-cache-memory`).
 */
export function startWorker(
  routerPort: number,
  replicaId: string | null,
  extraArgs: readonly string[] = [],
): Promise<ServiceProcess> {
  const replicaArgs = replicaId === null ? [] : ["--replica-id", replicaId];
  return startService("worker", [
    ...["--model", STORIES_DIR, "--router", `127.0.0.1:${routerPort}`],
    ...replicaArgs,
    ...extraArgs,
  ]);
}

/** Resolves once the router reports exactly `numReplicas` healthy replicas (30 s at most). */
export function waitForHealthyReplicas(
  client: TestRouterClient,
  numReplicas: number,
): Promise<void> {
  return waitFor(
    async () => (await client.stats()).replicas.filter((r) => r.healthy).length === numReplicas,
    `${numReplicas} healthy replicas`,
    { timeoutMs: 30_000 },
  );
}

/**
 * A router with two workers, `replica-a` and `replica-b`, both healthy. Tests may replace a
 * worker (restart it) by assigning the field; `stopTwoReplicas` stops whatever is there then.
 */
export interface TwoReplicas {
  readonly router: ServiceProcess;
  workerA: ServiceProcess;
  workerB: ServiceProcess;
  readonly client: TestRouterClient;
}

/** Starts a router (`routerArgs`) and two workers (`workerArgs`), and waits until both serve. */
export async function startTwoReplicas(
  routerArgs: readonly string[],
  workerArgs: readonly string[],
): Promise<TwoReplicas> {
  const router = await startRouter(routerArgs);
  const [workerA, workerB] = await Promise.all([
    startWorker(router.port, "replica-a", workerArgs),
    startWorker(router.port, "replica-b", workerArgs),
  ]);
  const client = new TestRouterClient(router.port);
  await waitForHealthyReplicas(client, 2);
  return { router, workerA, workerB, client };
}

/** Kills both workers, then stops the router. */
export async function stopTwoReplicas(cluster: TwoReplicas | undefined): Promise<void> {
  if (!cluster) return;
  cluster.client.close();
  await Promise.all([cluster.workerA.kill(), cluster.workerB.kill()]);
  await cluster.router.stop();
}

/** A router with one worker, healthy. */
export interface OneReplica {
  readonly router: ServiceProcess;
  readonly worker: ServiceProcess;
  readonly client: TestRouterClient;
}

/** Starts a router (`routerArgs`) and one worker (`workerArgs`), and waits until it serves. */
export async function startOneReplica(
  routerArgs: readonly string[],
  workerArgs: readonly string[] = [],
): Promise<OneReplica> {
  const router = await startRouter(routerArgs);
  const worker = await startWorker(router.port, null, workerArgs);
  const client = new TestRouterClient(router.port);
  await waitForHealthyReplicas(client, 1);
  return { router, worker, client };
}

/** Stops the worker, then the router. */
export async function stopOneReplica(cluster: OneReplica | undefined): Promise<void> {
  if (!cluster) return;
  cluster.client.close();
  await cluster.worker.stop();
  await cluster.router.stop();
}
