import { loadConfig } from "@kiln/model";
import { type Backend, kvBytesPerBlock } from "./backend";
import { type CpuBackendOptions, createCpuBackend } from "./cpu/cpu-backend";
import { DEFAULT_BLOCK_SIZE } from "./cpu/model-runner";
import { acquireGpuDevice, type GpuDeviceHandle } from "./webgpu/gpu-device";
import { createWebGpuBackendOn } from "./webgpu/webgpu-backend";

/** KILN_BACKEND / --backend. */
export type BackendKind = "cpu" | "webgpu" | "auto";

export const BACKEND_KINDS: readonly BackendKind[] = ["cpu", "webgpu", "auto"];

export function isBackendKind(text: string): text is BackendKind {
  return (BACKEND_KINDS as readonly string[]).includes(text);
}

export interface SelectBackendOptions extends Omit<CpuBackendOptions, "numBlocks"> {
  readonly kind: BackendKind;
  /**
   * KV pool bytes (KILN_KV_CACHE_MEMORY), or null for the default: 512 MiB on the CPU; on WebGPU
   * `webgpuKvFraction` of what the adapter's storage bindings can hold (one binding per layer
   * for K and one for V).
   */
  readonly kvCacheBytes: number | null;
  /** Share of the adapter's per-binding limit the default WebGPU pool takes; 0.5 by default. */
  readonly webgpuKvFraction?: number;
  /** Dawn backend to try (KILN_WEBGPU_BACKEND); see AcquireGpuOptions. */
  readonly dawnBackend?: string;
}

export interface SelectedBackend {
  readonly backend: Backend;
  /** The adapter's name when the backend is webgpu, else null. */
  readonly adapter: string | null;
  /** Why `auto` settled where it did, for the start-up log; null unless kind was auto. */
  readonly autoReason: string | null;
}

const DEFAULT_CPU_KV_BYTES = 512 * 1024 ** 2;

/**
 * Creates the backend KILN_BACKEND names. "webgpu" rejects with Dawn's reason when no usable
 * adapter comes up (no silent fallback); "auto" takes WebGPU only on a hardware adapter (a
 * software one such as llvmpipe counts as a CPU) and the CPU backend otherwise.
 */
export async function createSelectedBackend(opts: SelectBackendOptions): Promise<SelectedBackend> {
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  const config = await loadConfig(opts.modelDir);
  const perBlock = kvBytesPerBlock(config, blockSize, opts.kvCacheDtype);
  let autoReason: string | null = null;
  let handle: GpuDeviceHandle | null = null;
  if (opts.kind === "webgpu") {
    handle = await acquireGpuDevice({ dawnBackend: opts.dawnBackend });
  } else if (opts.kind === "auto") {
    try {
      handle = await acquireGpuDevice({ dawnBackend: opts.dawnBackend });
      if (handle.adapter.isCpu) {
        autoReason = `adapter ${handle.adapter.name} is a software renderer`;
        handle.device.destroy();
        handle = null;
      } else {
        autoReason = `hardware adapter ${handle.adapter.name}`;
      }
    } catch (err) {
      autoReason = err instanceof Error ? err.message : String(err);
    }
  }
  if (handle === null) {
    const kvBytes = opts.kvCacheBytes ?? DEFAULT_CPU_KV_BYTES;
    const numBlocks = Math.floor(kvBytes / perBlock);
    if (numBlocks < 1) throw new Error("--kv-cache-memory is too small for one KV block");
    const backend = await createCpuBackend({ ...opts, numBlocks });
    return { backend, adapter: null, autoReason };
  }
  const numBlocks = webgpuNumBlocks(handle, config, blockSize, opts);
  const backend = await createWebGpuBackendOn(handle, { ...opts, blockSize, numBlocks });
  return { backend, adapter: handle.adapter.name, autoReason };
}

/**
 * Blocks of the WebGPU pool: the requested bytes (or the fraction of the binding limit), never
 * more than one layer's K fitting one storage binding. Throws when not one block fits.
 */
export function webgpuNumBlocks(
  handle: GpuDeviceHandle,
  config: { numLayers: number; numKvHeads: number; headDim: number },
  blockSize: number,
  opts: Pick<SelectBackendOptions, "kvCacheBytes" | "webgpuKvFraction">,
): number {
  const perBlock = kvBytesPerBlock(config, blockSize);
  const layerBlockBytes = perBlock / (2 * config.numLayers);
  const maxBinding = handle.adapter.maxStorageBufferBindingSize;
  const maxBlocks = Math.floor(maxBinding / layerBlockBytes);
  const fraction = opts.webgpuKvFraction ?? 0.5;
  const wanted =
    opts.kvCacheBytes === null
      ? Math.floor(maxBlocks * fraction)
      : Math.floor(opts.kvCacheBytes / perBlock);
  const numBlocks = Math.min(wanted, maxBlocks);
  if (numBlocks < 1) throw new Error("--kv-cache-memory is too small for one KV block");
  return numBlocks;
}
