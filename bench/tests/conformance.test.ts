import { resolve } from "node:path";
import { type RunningCluster, startCluster } from "@kiln/cluster";
import { STORIES_DIR, STORIES_NAME } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CheckResult } from "../src/conformance/check";
import { runConformance, toMarkdown } from "../src/conformance/runner";

/**
 * Checks Kiln declines by design, each with the reason (docs/conformance.md repeats them).
 * Every other check must pass.
 */
const KILN_UNSUPPORTED_BY_DESIGN: Record<string, string> = {
  "responses.built-in-tools": "Kiln runs no server-side tools",
};

let cluster: RunningCluster | undefined;
let results: CheckResult[] = [];
const logs: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({
    repoRoot: resolve(import.meta.dirname, "../.."),
    modelDir: STORIES_DIR,
    servedName: STORIES_NAME,
    host: "127.0.0.1",
    port: 0,
    routerPort: 0,
    drainTimeoutS: 5,
    startTimeoutMs: 60_000,
    // KILN_TASK=embed adds /v1/embeddings; generation stays on, so every endpoint is checked.
    env: { ...process.env, KILN_KV_CACHE_MEMORY: "64MiB", KILN_TASK: "embed" },
    log: (line) => logs.push(line),
  });
  const origin = `http://127.0.0.1:${cluster.gatewayPort}`;
  results = await runConformance({
    origin,
    model: STORIES_NAME,
    apiKey: "unused",
    timeoutMs: 30_000,
  });
}, 150_000);

afterAll(async () => {
  await cluster?.stop("tests done");
}, 30_000);

describe("the conformance suite against Kiln", () => {
  it("passes every check except those unsupported by design", () => {
    const table = toMarkdown(results);
    expect(
      results.filter((r) => r.status === "fail"),
      table,
    ).toEqual([]);
    const unsupported = results.filter((r) => r.status === "unsupported").map((r) => r.id);
    expect(unsupported.sort(), table).toEqual(Object.keys(KILN_UNSUPPORTED_BY_DESIGN).sort());
    expect(results.length).toBeGreaterThan(30);
  });
});
