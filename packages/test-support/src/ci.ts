import { spawnSync } from "node:child_process";

/** True under CI (`CI=true` or `CI=1`). */
export const isCi = (): boolean => process.env.CI === "true" || process.env.CI === "1";

/**
 * For `describe.skipIf(!requireAvailable(...))`: returns whether a binary, service or addon
 * the test needs is available. Under CI a missing one throws instead, so the suite fails
 * rather than skipping silently.
 */
export function requireAvailable(what: string, isAvailable: boolean, howToGet = ""): boolean {
  if (isAvailable) return true;
  if (isCi()) {
    throw new Error(
      `${what} is required under CI=true but is not available${howToGet ? `: ${howToGet}` : ""}`,
    );
  }
  return false;
}

/** True when `command args` runs and exits 0 (for example `hasBinary("redis-server", ["--version"])`). */
export function hasBinary(command: string, args: readonly string[] = ["--version"]): boolean {
  return spawnSync(command, args, { stdio: "ignore" }).status === 0;
}
