import type { LlamaConfig, WeightMap } from "@kiln/model";
import { requireAvailable } from "@kiln/test-support";
import { CpuModelRunner } from "../../src/cpu/model-runner";
import { acquireGpuDevice, type GpuDeviceHandle } from "../../src/webgpu/gpu-device";
import { WebGpuRunner } from "../../src/webgpu/webgpu-runner";
import type { Stepper } from "./step-driver";

/** A backend the shared kernel suite runs against, built over in-memory weights. */
export interface BackendUnderTest {
  readonly name: "cpu" | "webgpu";
  create(config: LlamaConfig, weights: WeightMap, opts: RunnerShape): Promise<DisposableStepper>;
}

export interface RunnerShape {
  readonly numBlocks: number;
  readonly blockSize: number;
}

export interface DisposableStepper extends Stepper {
  dispose(): void;
}

export const cpuUnderTest: BackendUnderTest = {
  name: "cpu",
  async create(config, weights, opts) {
    // One gemm thread: the matrices are tiny, and the test machine's cores are shared.
    const runner = new CpuModelRunner(config, weights, { ...opts, numThreads: 1 });
    return { step: (input) => runner.step(input), dispose: () => {} };
  },
};

/**
 * The WebGPU device of this test file (Dawn over llvmpipe in CI), or null when none comes up.
 * Under CI=true a missing adapter throws (requireAvailable): the suite fails, never skips.
 */
export async function testGpuDevice(): Promise<GpuDeviceHandle | null> {
  let handle: GpuDeviceHandle | null = null;
  let reason = "";
  try {
    handle = await acquireGpuDevice({ dawnBackend: process.env.KILN_WEBGPU_BACKEND });
  } catch (err) {
    reason = err instanceof Error ? err.message : String(err);
  }
  requireAvailable(
    `a WebGPU adapter (${reason})`,
    handle !== null,
    "apt-get install libegl1 libgles2 libgl1-mesa-dri; EGL_PLATFORM=surfaceless",
  );
  return handle;
}

/** `device()` is the file's device; a test that runs without one is skipped via ctx.skip. */
export function webgpuUnderTest(device: () => GpuDeviceHandle | null): BackendUnderTest {
  return {
    name: "webgpu",
    async create(config, weights, opts) {
      const handle = device();
      if (handle === null) throw new Error("no WebGPU adapter on this machine");
      const runner = await WebGpuRunner.create(
        handle.device,
        handle.adapter,
        config,
        weights,
        opts,
      );
      return { step: (input) => runner.step(input), dispose: () => runner.destroy() };
    },
  };
}
