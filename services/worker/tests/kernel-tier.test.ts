import { resolve } from "node:path";
import { type ServiceProcess, startServiceProcess } from "@kiln/cluster";
import { freePort, REPO_ROOT, STORIES_DIR } from "@kiln/test-support";
import { afterAll, describe, expect, it, vi } from "vitest";
import { checkKernelTier, takeKernelTierFlags } from "../src/kernel-tier";

// The kernel tier is visible (ADR 0022): in a real worker's listening line and /metrics, with
// oneDNN made unavailable; a slow tier warns, or fails under KILN_REQUIRE_NATIVE=1.

describe("a worker without oneDNN names its kernel tier", () => {
  let worker: ServiceProcess | undefined;
  afterAll(async () => {
    await worker?.stop();
  });

  it("listening line and kiln_worker_kernel_tier_info", { timeout: 90_000 }, async () => {
    const metricsPort = await freePort();
    worker = await startServiceProcess(
      "worker",
      resolve(REPO_ROOT, "services/worker/src/main.ts"),
      {
        args: ["--model", STORIES_DIR, "--port", "0", "--kernel-tier", "native-prebuilt"],
        cwd: REPO_ROOT,
        env: { KILN_DISABLE_ONEDNN: "1", KILN_WORKER_METRICS_PORT: String(metricsPort) },
        timeoutMs: 80_000,
      },
    );
    const listening = worker.jsonLines.find((l) => l.event === "listening")!;
    expect(listening.kernelTier).toMatch(/^native-(avx512|avx2)$/);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toContain(`kiln_worker_kernel_tier_info{tier="${listening.kernelTier}"} 1`);
  });
});

describe("a worker without any native tier runs the wasm tier", () => {
  let worker: ServiceProcess | undefined;
  afterAll(async () => {
    await worker?.stop();
  });

  it("auto picks wasm-simd and names it", { timeout: 90_000 }, async () => {
    const metricsPort = await freePort();
    worker = await startServiceProcess(
      "worker",
      resolve(REPO_ROOT, "services/worker/src/main.ts"),
      {
        args: ["--model", STORIES_DIR, "--port", "0"],
        cwd: REPO_ROOT,
        env: {
          KILN_DISABLE_ONEDNN: "1",
          KILN_DISABLE_NATIVE_TIER: "1",
          KILN_KERNEL_TIER: "",
          // CI exports KILN_REQUIRE_NATIVE=1 (.ci/run); this worker must pick wasm-simd by itself.
          KILN_REQUIRE_NATIVE: "",
          KILN_WORKER_METRICS_PORT: String(metricsPort),
        },
        timeoutMs: 80_000,
      },
    );
    const listening = worker.jsonLines.find((l) => l.event === "listening")!;
    expect(listening.kernelTier).toBe("wasm-simd");
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toContain('kiln_worker_kernel_tier_info{tier="wasm-simd"} 1');
  });
});

describe("start-up checks", () => {
  it("flags set the environment the backend thread inherits; bad tiers are refused", () => {
    const env: NodeJS.ProcessEnv = {};
    const rest = takeKernelTierFlags(
      ["--kernel-tier", "typescript", "--require-native", "-x"],
      env,
    );
    expect(rest).toEqual(["-x"]);
    expect(env).toEqual({ KILN_KERNEL_TIER: "typescript", KILN_REQUIRE_NATIVE: "1" });
    expect(() => takeKernelTierFlags(["--kernel-tier=fast"], {})).toThrow(/KILN_KERNEL_TIER/);
  });

  it("a slow tier warns loudly, or fails under KILN_REQUIRE_NATIVE=1 unless forced", () => {
    const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(checkKernelTier("typescript", {}).isSlow).toBe(true);
      expect(String(write.mock.calls[0]?.[0])).toMatch(/WARNING: .*slow "typescript" tier/);
      expect(() => checkKernelTier("typescript", { KILN_REQUIRE_NATIVE: "1" })).toThrow(
        /KILN_REQUIRE_NATIVE=1/,
      );
      const forced = { KILN_REQUIRE_NATIVE: "1", KILN_KERNEL_TIER: "typescript" };
      expect(checkKernelTier("typescript", forced).isSlow).toBe(true);
      write.mockClear();
      expect(checkKernelTier("native-avx512", { KILN_REQUIRE_NATIVE: "1" }).isSlow).toBe(false);
      expect(write).not.toHaveBeenCalled();
      expect(checkKernelTier("wasm-simd", {}).isSlow).toBe(false);
      expect(write).not.toHaveBeenCalled();
      expect(() => checkKernelTier("wasm-simd", { KILN_REQUIRE_NATIVE: "1" })).toThrow(
        /KILN_REQUIRE_NATIVE=1 .*"wasm-simd"/,
      );
      expect(
        checkKernelTier("wasm-simd", { KILN_REQUIRE_NATIVE: "1", KILN_KERNEL_TIER: "wasm" }).isSlow,
      ).toBe(false);
    } finally {
      write.mockRestore();
    }
  });
});
