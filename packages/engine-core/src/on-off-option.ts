/**
 * A switch from a flag or an environment variable: "on"/"off" (also 1/0, true/false); `fallback`
 * when unset. Throws a message naming the flag on anything else.
 */
export function onOffOption(value: string | undefined, fallback: boolean, name: string): boolean {
  if (value === undefined) return fallback;
  if (["on", "1", "true"].includes(value)) return true;
  if (["off", "0", "false"].includes(value)) return false;
  throw new Error(`${name}: expected on or off, got "${value}"`);
}
