import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type ServiceProcess, startServiceProcess } from "@kiln/cluster";

export type { ServiceProcess } from "@kiln/cluster";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

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

/** Polls `check` every 100 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
