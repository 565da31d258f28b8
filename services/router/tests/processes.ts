import { resolve } from "node:path";
import { type ServiceProcess, startServiceProcess } from "@kiln/cluster";
import { REPO_ROOT } from "@kiln/test-support";

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
