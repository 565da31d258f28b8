import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type ServiceProcess, startServiceProcess } from "@kiln/cluster";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const STORIES_DIR = resolve(REPO_ROOT, "../shared/models/stories260K");
export const GOLDEN_PATH = resolve(REPO_ROOT, "../shared/golden/stories260K-greedy.json");

export interface Golden {
  readonly cases: readonly {
    readonly prompt: string;
    readonly prompt_ids: number[];
    readonly greedy_ids: number[];
    readonly greedy_text: string;
  }[];
}

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

/** Polls `check` every 50 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
