import { afterAll, describe, it } from "vitest";
import type { GpuDeviceHandle } from "../src/webgpu/gpu-device";
import { defineBackendSuite } from "./helpers/backend-suite";
import { cpuUnderTest, testGpuDevice, webgpuUnderTest } from "./helpers/backends";

// The shared backend suite (tests/helpers/backend-suite.ts) on the WebGPU backend: Dawn over
// Mesa llvmpipe (OpenGL ES, compatibility feature level) on a machine without a GPU. Under
// CI=true a missing adapter fails here instead of skipping.
//
// Opt-in (KILN_WEBGPU_TESTS=1) for now: inside a vitest fork, Dawn 0.6.2 over llvmpipe aborts
// the process ("terminate called after throwing an instance of std::system_error") or stalls
// after a few tests, while the same steps pass in a plain Node process (ADR 0019, known issues).
const isEnabled = process.env.KILN_WEBGPU_TESTS === "1";
const gpu: GpuDeviceHandle | null = isEnabled ? await testGpuDevice() : null;
afterAll(() => gpu?.device.destroy());

if (gpu === null) {
  describe("webgpu backend", () => {
    it.skip("set KILN_WEBGPU_TESTS=1 (and have an adapter) to run the suite on WebGPU", () => {});
  });
} else {
  const handle = gpu;
  defineBackendSuite(
    webgpuUnderTest(() => handle),
    cpuUnderTest,
  );
}
