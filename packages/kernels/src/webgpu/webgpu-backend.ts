import { loadModel } from "@kiln/model";
import type { Backend, BackendInfo, BackendOptions, StepInput, StepOutput } from "../backend";
import { DEFAULT_BLOCK_SIZE } from "../cpu/model-runner";
import {
  type AcquireGpuOptions,
  acquireGpuDevice,
  type GpuAdapterDescription,
  type GpuDeviceHandle,
} from "./gpu-device";
import { WebGpuRunner } from "./webgpu-runner";

export interface WebGpuBackendOptions extends BackendOptions, AcquireGpuOptions {}

/** A Backend whose info also names the adapter it runs on. */
export interface WebGpuBackend extends Backend {
  readonly adapter: GpuAdapterDescription;
}

/**
 * The WebGPU backend: a WebGpuRunner on a device of its own. The GPU works asynchronously, so
 * a step never blocks the caller's event loop on the math (Dawn's OpenGL backend over llvmpipe
 * does run shaders in the driver's threads). A lost device or an uncaptured error makes every
 * later step reject with Dawn's message (deadReason).
 */
class WebGpuBackendImpl implements WebGpuBackend {
  readonly info: BackendInfo;
  readonly adapter: GpuAdapterDescription;
  private isStepping = false;
  private deathReason: string | null = null;

  constructor(
    private readonly device: GPUDevice,
    private readonly runner: WebGpuRunner,
    adapter: GpuAdapterDescription,
  ) {
    this.info = runner.info;
    this.adapter = adapter;
    void device.lost.then((info) => {
      this.deathReason ??= `WebGPU device lost: ${info.message || info.reason}`;
    });
    device.addEventListener("uncapturederror", (event) => {
      const message = (event as GPUUncapturedErrorEvent).error.message;
      this.deathReason ??= `WebGPU error: ${message}`;
    });
  }

  async step(input: StepInput): Promise<StepOutput> {
    if (this.deathReason !== null) throw new Error(this.deathReason);
    if (this.isStepping)
      throw new Error("WebGPU backend: a step is already running; await it first");
    this.isStepping = true;
    try {
      const output = await this.runner.step(input);
      // An error raised by this step's commands is reported before its mapAsync resolves.
      if (this.deathReason !== null) throw new Error(this.deathReason);
      return output;
    } finally {
      this.isStepping = false;
    }
  }

  deadReason(): string | null {
    return this.deathReason;
  }

  async dispose(): Promise<void> {
    if (this.deathReason === null) this.deathReason = "WebGPU backend is disposed";
    this.runner.destroy();
    this.device.destroy();
  }
}

/**
 * Acquires a device (see acquireGpuDevice), loads `modelDir` and uploads it, allocates
 * `numBlocks` KV blocks. Rejects with Dawn's reason when no usable adapter comes up: a caller
 * that asked for webgpu gets that error, never a silent CPU fallback.
 */
export async function createWebGpuBackend(opts: WebGpuBackendOptions): Promise<WebGpuBackend> {
  return createWebGpuBackendOn(await acquireGpuDevice(opts), opts);
}

/**
 * As createWebGpuBackend, on a device already acquired (backend selection looks at the adapter
 * first). The backend owns the device from here on: dispose() (or a failure here) destroys it.
 */
export async function createWebGpuBackendOn(
  handle: GpuDeviceHandle,
  opts: BackendOptions,
): Promise<WebGpuBackend> {
  const { device, adapter } = handle;
  try {
    if ((opts.kvCacheDtype ?? "f32") !== "f32") {
      throw new Error(`the WebGPU backend keeps its KV cache in f32, not ${opts.kvCacheDtype}`);
    }
    const { config, weights } = await loadModel(opts.modelDir);
    const runner = await WebGpuRunner.create(device, adapter, config, weights, {
      numBlocks: opts.numBlocks,
      blockSize: opts.blockSize ?? DEFAULT_BLOCK_SIZE,
    });
    return new WebGpuBackendImpl(device, runner, adapter);
  } catch (err) {
    device.destroy();
    throw err;
  }
}
