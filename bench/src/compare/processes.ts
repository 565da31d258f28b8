import { resolve } from "node:path";
import { type ServiceProcess, startServiceProcess } from "@kiln/cluster";
import { REPO_ROOT } from "@kiln/test-support";

export type { ServiceProcess } from "@kiln/cluster";

export { REPO_ROOT } from "@kiln/test-support";

export interface StartOptions {
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

/**
 * Starts `script` (relative to the repo root) as a real process under tsx and resolves once it
 * reports `listening` (see `startServiceProcess`).
 */
export function startProcess(
  name: string,
  script: string,
  opts: StartOptions = {},
): Promise<ServiceProcess> {
  return startServiceProcess(name, resolve(REPO_ROOT, script), {
    ...opts,
    cwd: REPO_ROOT,
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
}
