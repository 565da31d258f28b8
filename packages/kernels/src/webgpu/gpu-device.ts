/**
 * Acquiring a WebGPU device through Dawn (the `webgpu` package), and describing its adapter.
 * Two ways in, tried in order unless `dawnBackend` pins one:
 * - the platform's native backend (Vulkan on Linux, Metal, D3D12) at the core feature level;
 * - Dawn's OpenGL ES / OpenGL backend at the compatibility feature level, which is what Mesa's
 *   llvmpipe offers on a machine without a GPU (EGL_PLATFORM=surfaceless; ADR 0019).
 */

export interface GpuAdapterDescription {
  /** "vendor architecture device (description)", whatever the adapter reports. */
  readonly name: string;
  /** True for software adapters (llvmpipe, lavapipe, SwiftShader, WARP): `auto` skips them. */
  readonly isCpu: boolean;
  readonly dawnBackend: string;
  readonly featureLevel: "core" | "compatibility";
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxStorageBuffersPerShaderStage: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
}

export interface GpuDeviceHandle {
  readonly device: GPUDevice;
  readonly adapter: GpuAdapterDescription;
}

export interface AcquireGpuOptions {
  /**
   * Dawn backend to use ("vulkan", "opengl", "opengles", "metal", "d3d12"), or undefined to try
   * the native one and then OpenGL ES / OpenGL (KILN_WEBGPU_BACKEND).
   */
  readonly dawnBackend?: string;
}

/** Limits a step needs; the device asks for the adapter's own values of these. */
const REQUESTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupStorageSize",
] as const;

/** Kernels use 256-invocation workgroups (16×16 GEMM tiles, 256-wide reductions). */
const MIN_INVOCATIONS = 256;
const MIN_STORAGE_BUFFERS = 9;

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|softpipe|swiftshader|warp|microsoft basic render/i;

interface Attempt {
  readonly dawnBackend: string | undefined;
  readonly featureLevel: "core" | "compatibility";
}

function attemptsFor(dawnBackend: string | undefined): Attempt[] {
  if (dawnBackend === undefined) {
    return [
      { dawnBackend: undefined, featureLevel: "core" },
      { dawnBackend: "opengles", featureLevel: "compatibility" },
      { dawnBackend: "opengl", featureLevel: "compatibility" },
    ];
  }
  const isGl = dawnBackend === "opengl" || dawnBackend === "opengles";
  return [{ dawnBackend, featureLevel: isGl ? "compatibility" : "core" }];
}

function describeAdapter(adapter: GPUAdapter, attempt: Attempt): GpuAdapterDescription {
  const info = adapter.info;
  const parts = [info.vendor, info.architecture, info.device].filter((s) => s && s.length > 0);
  const description = info.description ?? "";
  const name = `${parts.join(" ")}${description ? ` (${description})` : ""}`.trim() || "unknown";
  const limits = adapter.limits;
  return {
    name,
    isCpu: SOFTWARE_ADAPTER.test(`${name} ${description}`),
    dawnBackend: attempt.dawnBackend ?? "default",
    featureLevel: attempt.featureLevel,
    hasF16: adapter.features.has("shader-f16"),
    hasSubgroups: adapter.features.has("subgroups"),
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
    maxBufferSize: limits.maxBufferSize,
    maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
    maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
  };
}

/** Why this adapter cannot run Kiln's kernels, or null when it can. */
function unusableReason(d: GpuAdapterDescription): string | null {
  if (d.maxComputeInvocationsPerWorkgroup < MIN_INVOCATIONS) {
    return `adapter ${d.name} allows ${d.maxComputeInvocationsPerWorkgroup} invocations per workgroup, kernels need ${MIN_INVOCATIONS}`;
  }
  if (d.maxStorageBuffersPerShaderStage < MIN_STORAGE_BUFFERS) {
    return `adapter ${d.name} allows ${d.maxStorageBuffersPerShaderStage} storage buffers per stage, kernels need ${MIN_STORAGE_BUFFERS}`;
  }
  return null;
}

/**
 * Finds the first usable adapter (see the order above) and creates a device with the adapter's
 * own limits. Rejects with every attempt's reason when none works: Dawn's message when the
 * backend exists but gives no adapter, ours when an adapter is too small.
 */
/**
 * Every Dawn instance `create` returned, kept reachable for the life of the process: when the
 * garbage collector finalizes one (an unused attempt's, or the one a device came from), Dawn
 * tears down state its other objects still use, and the process dies at a random later step
 * (SIGSEGV, or "std::system_error: Invalid argument" from a thread it joins). ADR 0019.
 */
const liveInstances: unknown[] = [];

export async function acquireGpuDevice(opts: AcquireGpuOptions = {}): Promise<GpuDeviceHandle> {
  // Mesa's EGL needs a platform without a display server; harmless on real GPUs.
  process.env.EGL_PLATFORM ??= "surfaceless";
  // Loaded on demand: processes that never touch a GPU do not load Dawn's native module.
  const { create } = await import("webgpu");
  const reasons: string[] = [];
  for (const attempt of attemptsFor(opts.dawnBackend)) {
    const label = `${attempt.dawnBackend ?? "native"}/${attempt.featureLevel}`;
    try {
      const gpu = create(
        attempt.dawnBackend === undefined ? [] : [`backend=${attempt.dawnBackend}`],
      );
      liveInstances.push(gpu);
      const adapter = await gpu.requestAdapter({ featureLevel: attempt.featureLevel });
      if (adapter === null) {
        reasons.push(`${label}: Dawn found no adapter`);
        continue;
      }
      const description = describeAdapter(adapter, attempt);
      const reason = unusableReason(description);
      if (reason !== null) {
        reasons.push(`${label}: ${reason}`);
        continue;
      }
      const requiredLimits: Record<string, number> = {};
      for (const key of REQUESTED_LIMITS) requiredLimits[key] = adapter.limits[key];
      const device = await adapter.requestDevice({ requiredLimits });
      return { device, adapter: description };
    } catch (err) {
      reasons.push(`${label}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new Error(`no usable WebGPU adapter: ${reasons.join("; ")}`);
}
