import { tryLoadNativeAddon } from "../cpu/native-addon";
import type { Collective } from "./collective";

type RingHandle = { readonly __tcpRing: unique symbol };

/** native/tcp-collective.cc */
interface NativeTcp {
  open(
    rank: number,
    size: number,
    listenPort: number,
    nextHost: string,
    nextPort: number,
    timeoutMs: number,
  ): RingHandle;
  allReduce(ring: RingHandle, buf: Float32Array, n: number, timeoutMs: number): void;
  broadcast(
    ring: RingHandle,
    bytes: Uint8Array | null,
    idleTimeoutMs: number,
    timeoutMs: number,
  ): Uint8Array | null;
  close(ring: RingHandle): void;
}

export interface TcpRingOptions {
  readonly rank: number;
  readonly size: number;
  /** Port this rank listens on for its previous rank (all interfaces). */
  readonly listenPort: number;
  /** host:port of the next rank, (rank + 1) mod size. */
  readonly next: string;
  /** Each all-reduce or forwarded step fails (WORKER_LOST) after this long. */
  readonly timeoutMs: number;
  /** Connecting the ring (every rank up and listening); timeoutMs by default. */
  readonly connectTimeoutMs?: number;
}

/**
 * The Collective between hosts (ADR 0018): a ring over TCP (reduce-scatter then all-gather,
 * 2 (T − 1) / T of the data sent per rank). `connect` blocks until the ring is closed; every
 * rank must call it. A failed op closes the ring: build a new one to recover.
 */
export class TcpRing implements Collective {
  readonly rank: number;
  readonly size: number;

  private constructor(
    opts: TcpRingOptions,
    private readonly tcp: NativeTcp,
    private readonly handle: RingHandle,
    private readonly timeoutMs: number,
  ) {
    this.rank = opts.rank;
    this.size = opts.size;
  }

  static connect(opts: TcpRingOptions): TcpRing {
    const tcp = (tryLoadNativeAddon() as { tcp?: NativeTcp } | null)?.tcp;
    if (tcp === undefined) throw new Error("the TCP ring needs the kiln_gemm addon");
    const colon = opts.next.lastIndexOf(":");
    const host = opts.next.slice(0, colon);
    const port = Number(opts.next.slice(colon + 1));
    const connectMs = opts.connectTimeoutMs ?? opts.timeoutMs;
    const handle = tcp.open(opts.rank, opts.size, opts.listenPort, host, port, connectMs);
    return new TcpRing(opts, tcp, handle, opts.timeoutMs);
  }

  allReduce(buf: Float32Array, n: number): void {
    this.tcp.allReduce(this.handle, buf, n, this.timeoutMs);
  }

  /**
   * Passes a message around the ring from rank 0: rank 0 sends `bytes` (and gets null); the
   * others wait up to `idleTimeoutMs` for one to start (null: none did), receive it, forward it.
   */
  broadcast(bytes: Uint8Array | null, idleTimeoutMs: number): Uint8Array | null {
    return this.tcp.broadcast(this.handle, bytes, idleTimeoutMs, this.timeoutMs);
  }

  close(): void {
    this.tcp.close(this.handle);
  }
}
