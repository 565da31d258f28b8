import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { freePort, loadGoldenCases, requireAvailable, STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { tryLoadNativeAddon } from "../src/cpu/native-addon";

// The collectives live in the kiln_gemm addon; CI=true requires it.
const hasCollectives = requireAvailable(
  "the tcp collectives (kiln_gemm addon)",
  (tryLoadNativeAddon() as { tcp?: unknown } | null)?.tcp !== undefined,
  "build it: npm run build -w @kiln/kernels",
);

// Separate processes on loopback: the ring a multi-host group would use, on one machine.
const SCRIPT = join(import.meta.dirname, "helpers/tcp-rank.ts");

async function runRing(size: number, mode: string, modelDir = ""): Promise<unknown[]> {
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const ranks = ports.map((port, rank) => {
    const next = `127.0.0.1:${ports[(rank + 1) % size]}`;
    const child = spawn(
      process.execPath,
      ["--import", "tsx", SCRIPT, String(rank), String(size), String(port), next, mode, modelDir],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    return new Promise<unknown>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on("line", (line) => resolve(JSON.parse(line)));
      child.once("exit", (code) => code !== 0 && reject(new Error(`rank ${rank} exited ${code}`)));
    });
  });
  return Promise.all(ranks);
}

describe.skipIf(!hasCollectives)("TCP ring all-reduce on loopback", () => {
  it("sums over 3 ranks, bit-identical on every rank", async () => {
    const results = (await runRing(3, "sum")) as { values: number[] }[];
    const expected = Array.from({ length: 1001 }, (_, i) => 3 + (3 * i) / 7);
    for (const r of results) {
      expect(r.values).toEqual(results[0]!.values);
      for (const [i, v] of r.values.entries()) expect(v).toBeCloseTo(expected[i]!, 4);
    }
  });

  it("runs a T = 2 forward pass that reproduces the golden continuations", async () => {
    const results = (await runRing(2, "golden", STORIES_DIR)) as { generated: number[][] }[];
    const expected = loadGoldenCases().map((c) => c.greedy_ids);
    for (const r of results) expect(r.generated).toEqual(expected);
  });
});
