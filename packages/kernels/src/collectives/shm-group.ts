import { tryLoadNativeAddon } from "../cpu/native-addon";
import type { Collective, RankStatus } from "./collective";

/** Floats per rank per slot: larger all-reduces and broadcasts go in pieces of this size. */
export const DEFAULT_SLOT_FLOATS = 64 * 1024;

type ShmHandle = { readonly __shmGroup: unique symbol };

/** native/shm-collective.cc; see that file for the segment layout and the op protocol. */
interface NativeShm {
  open(name: string, rank: number, size: number, slotFloats: number): ShmHandle | null;
  form(g: ShmHandle, timeoutMs: number): boolean;
  join(g: ShmHandle): number;
  allReduce(g: ShmHandle, buf: Float32Array, n: number, timeoutMs: number): void;
  broadcast(g: ShmHandle, bytes: Uint8Array, len: number, timeoutMs: number): number;
  status(g: ShmHandle): RankStatus[];
  peek(name: string): RankStatus[] | null;
  close(g: ShmHandle, unlink: boolean): void;
}

function nativeShm(): NativeShm {
  const shm = (tryLoadNativeAddon() as { shm?: NativeShm } | null)?.shm;
  if (shm === undefined) {
    throw new Error(
      "tensor parallelism needs the kiln_gemm addon with shm collectives: npm run build -w @kiln/kernels",
    );
  }
  return shm;
}

/** POSIX shared-memory name of a group ("/kiln-tp-<id>", safe characters only). */
export function shmGroupName(groupId: string): string {
  return `/kiln-tp-${groupId.replace(/[^A-Za-z0-9_.-]/g, "_")}`;
}

/** Status of a group's segment seen from outside it (health checks); null before it exists. */
export function peekShmGroup(groupId: string): RankStatus[] | null {
  return nativeShm().peek(shmGroupName(groupId));
}

export interface ShmGroupOptions {
  readonly groupId: string;
  readonly rank: number;
  readonly size: number;
  /** A wait for a peer longer than this fails the op (a stalled rank). */
  readonly timeoutMs: number;
  readonly slotFloats?: number;
}

/**
 * One rank's handle on a shared-memory group: rank 0 creates the segment, the others open it
 * once it exists (`tryOpen` returns null until then). Ops block the calling thread.
 */
export class ShmGroup implements Collective {
  readonly rank: number;
  readonly size: number;
  readonly timeoutMs: number;
  readonly slotBytes: number;
  private readonly shm: NativeShm;
  private readonly handle: ShmHandle;

  private constructor(opts: ShmGroupOptions, shm: NativeShm, handle: ShmHandle) {
    this.rank = opts.rank;
    this.size = opts.size;
    this.timeoutMs = opts.timeoutMs;
    this.slotBytes = (opts.slotFloats ?? DEFAULT_SLOT_FLOATS) * 4 - 4;
    this.shm = shm;
    this.handle = handle;
  }

  static tryOpen(opts: ShmGroupOptions): ShmGroup | null {
    const shm = nativeShm();
    const name = shmGroupName(opts.groupId);
    const handle = shm.open(name, opts.rank, opts.size, opts.slotFloats ?? DEFAULT_SLOT_FLOATS);
    return handle === null ? null : new ShmGroup(opts, shm, handle);
  }

  /** Rank 0: starts a new epoch; true once every rank joined it within `timeoutMs`. */
  form(timeoutMs: number): boolean {
    return this.shm.form(this.handle, timeoutMs);
  }

  /** Ranks > 0: joins a newly formed epoch; the epoch taken part in (0: none yet). */
  join(): number {
    return this.shm.join(this.handle);
  }

  allReduce(buf: Float32Array, n: number): void {
    this.shm.allReduce(this.handle, buf, n, this.timeoutMs);
  }

  /**
   * One broadcast op of at most `slotBytes`: rank 0 sends bytes[0..len) and gets len back;
   * the others receive into `bytes` and get the length, or -1 after `timeoutMs` without one
   * (calling again resumes the same op).
   */
  broadcast(bytes: Uint8Array, len: number, timeoutMs: number): number {
    return this.shm.broadcast(this.handle, bytes, len, timeoutMs);
  }

  status(): RankStatus[] {
    return this.shm.status(this.handle);
  }

  /** Unmaps; `unlink` (rank 0 on shutdown) also removes the segment's name. */
  close(unlink: boolean): void {
    this.shm.close(this.handle, unlink);
  }
}
