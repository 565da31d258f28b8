/**
 * Reads a Prometheus text exposition (a `/metrics` page) the way a test asserts on it: the sum
 * of one metric's samples whose labels include `labels`. 0 when no sample matches, so compare
 * deltas taken before and after the load rather than absolute values.
 */
export function sumSamples(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const sampleLabels = match[2] ?? "";
    const isMatch = Object.entries(labels).every(([k, v]) => sampleLabels.includes(`${k}="${v}"`));
    if (isMatch) sum += Number(match[3]);
  }
  return sum;
}

/** Fetches `http://127.0.0.1:<port>/metrics` and sums one metric (see `sumSamples`). */
export async function scrapeSum(
  port: number,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!res.ok) throw new Error(`GET :${port}/metrics answered ${res.status}`);
  return sumSamples(await res.text(), name, labels);
}
