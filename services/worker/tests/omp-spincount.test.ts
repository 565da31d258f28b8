import { execFile } from "node:child_process";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "@kiln/test-support";
import { describe, expect, it } from "vitest";

// --omp-spincount reaches libgomp: set from the worker's main thread before the backend's first
// product, it decides how long an idle OpenMP helper spins. A helper that spins ~forever keeps
// a core busy while the process idles; one that spins 0 times sleeps at once.

const CHILD = resolve(REPO_ROOT, "services/worker/tests/fixtures/omp-spin-child.ts");

async function idleCpuMs(args: string[]): Promise<{ idleCpuMs: number; waitPolicy: string }> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", CHILD, ...args],
    {
      cwd: REPO_ROOT,
      env: withoutLibgompSettings(process.env),
    },
  );
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

/** The environment without the operator's own libgomp settings (the child sets its own). */
function withoutLibgompSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { GOMP_SPINCOUNT: _spin, OMP_WAIT_POLICY: _policy, ...rest } = env;
  return rest;
}

describe("--omp-spincount", () => {
  it("decides how long idle OpenMP helpers spin", { timeout: 60_000 }, async () => {
    // A two-thread team needs two CPUs; with fewer, libgomp throttles every spin to ~100.
    expect(availableParallelism()).toBeGreaterThanOrEqual(2);
    const spinning = await idleCpuMs(["--omp-spincount", "100000000000"]);
    const sleeping = await idleCpuMs(["--omp-spincount", "0"]);
    expect(spinning.waitPolicy).toBe("GOMP_SPINCOUNT=100000000000");
    expect(sleeping.waitPolicy).toBe("GOMP_SPINCOUNT=0");
    // 500 ms idle: the spinning helper burns most of it, the sleeping one next to nothing.
    expect(spinning.idleCpuMs).toBeGreaterThan(300);
    expect(sleeping.idleCpuMs).toBeLessThan(100);
  });
});
