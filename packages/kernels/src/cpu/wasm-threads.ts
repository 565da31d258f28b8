import { Worker } from "node:worker_threads";
import type { WasmMemory, WasmModule } from "./wasm-api";

/**
 * The WebAssembly tier's threads (ADR 0026): the calling thread plus `numThreads - 1` helper
 * worker_threads, each with its own instance of the GEMM module over the one shared memory.
 * A job is split into contiguous shares of panels; the caller runs share 0 and blocks (spin,
 * then Atomics.wait) until the helpers have run theirs, so `run` is synchronous like the native
 * tiers. Helpers spin ~50 µs for the next job, then sleep on Atomics.wait; they are unref'd, so
 * they never keep a process alive. Not reentrant: call from one thread (the backend's worker).
 *
 * Control words (Int32Array over a SharedArrayBuffer): [0] helpers still running, [1] a helper's
 * error, [2..11] the job (op, a, packed, out, m, n, k, accumulate, numPanels, w for op 1), [12]
 * eps (a float) for RMSNorm,
 * [16 + t] helper t's job counter (bumped only when helper t has a share, so it can never run
 * a job twice or read the next job's arguments), [15] number of threads.
 */

/**
 * What every thread runs over its share of `numPanels` (panels, or rows for the row ops): op 0
 * multiplies packed weights; op 1 packs w first (its own panels); op 2 SiLU·mul (a: gateUp, n:
 * ffnLen); op 3 RMSNorm (a: x, packed: weight, n: dim, eps in the float word EPS).
 */
export const OP_PACKED = 0;
export const OP_PACK_THEN_GEMM = 1;
export const OP_SILU_MUL = 2;
export const OP_RMS_NORM = 3;

const PENDING = 0;
const ERROR = 1;
const ARGS = 2; // op, a, packed, out, m, n, k, acc, numPanels, w
const EPS = 12;
const NUM_THREADS = 15;
const COUNTERS = 16;
const SPIN = 20_000;

/** The share of one thread: kiln_pack for op 1, then kiln_gemm over panels [p0, p1). */
export interface GemmExports {
  kiln_gemm(
    a: number,
    packed: number,
    out: number,
    m: number,
    n: number,
    k: number,
    acc: number,
    p0: number,
    p1: number,
  ): void;
  kiln_pack(w: number, packed: number, n: number, k: number, p0: number, p1: number): void;
  kiln_silu_mul(out: number, gateUp: number, ffn: number, r0: number, r1: number): void;
  kiln_rms_norm(
    out: number,
    x: number,
    weight: number,
    dim: number,
    eps: number,
    r0: number,
    r1: number,
  ): void;
}

/** Runs thread t's share of the job in `c` (HELPER_SHARE below is the same code for helpers). */
function runShare(ex: GemmExports, c: Int32Array, t: number, nt: number): void {
  const [op, a, packed, out, m, n, k, acc, numPanels, w] = c.subarray(ARGS, ARGS + 10);
  const p0 = Math.floor((t * numPanels!) / nt);
  const p1 = Math.floor(((t + 1) * numPanels!) / nt);
  if (p0 === p1) return;
  if (op === OP_SILU_MUL) ex.kiln_silu_mul(out!, a!, n!, p0, p1);
  else if (op === OP_RMS_NORM) {
    ex.kiln_rms_norm(out!, a!, packed!, n!, new Float32Array(c.buffer)[EPS]!, p0, p1);
  } else {
    if (op === OP_PACK_THEN_GEMM) ex.kiln_pack(w!, packed!, n!, k!, p0, p1);
    ex.kiln_gemm(a!, packed!, out!, m!, n!, k!, acc!, p0, p1);
  }
}

// The helpers' copy of runShare, plain JavaScript (a transpiled function's text may call the
// transpiler's helpers, which an eval'd worker lacks).
const HELPER_SHARE = `(ex, c, t, nt) => {
  const [op, a, packed, out, m, n, k, acc, numPanels, w] = c.subarray(${ARGS}, ${ARGS} + 10);
  const p0 = Math.floor((t * numPanels) / nt);
  const p1 = Math.floor(((t + 1) * numPanels) / nt);
  if (p0 === p1) return;
  if (op === ${OP_SILU_MUL}) return ex.kiln_silu_mul(out, a, n, p0, p1);
  if (op === ${OP_RMS_NORM}) {
    return ex.kiln_rms_norm(out, a, packed, n, new Float32Array(c.buffer)[${EPS}], p0, p1);
  }
  if (op === ${OP_PACK_THEN_GEMM}) ex.kiln_pack(w, packed, n, k, p0, p1);
  ex.kiln_gemm(a, packed, out, m, n, k, acc, p0, p1);
}`;

const HELPER = `
const { workerData } = require("node:worker_threads");
const { module, memory, control, index } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const c = new Int32Array(control);
const runShare = ${HELPER_SHARE};
let seen = 0;
for (;;) {
  let g = Atomics.load(c, ${COUNTERS} + index);
  for (let i = 0; g === seen && i < ${SPIN}; i++) g = Atomics.load(c, ${COUNTERS} + index);
  if (g === seen) {
    Atomics.wait(c, ${COUNTERS} + index, seen);
    continue;
  }
  seen = g;
  try {
    runShare(ex, c, index, c[${NUM_THREADS}]);
  } catch (err) {
    Atomics.store(c, ${ERROR}, 1);
  }
  if (Atomics.sub(c, ${PENDING}, 1) === 1) Atomics.notify(c, ${PENDING});
}
`;

export class WasmThreads {
  private readonly control = new Int32Array(new SharedArrayBuffer(4 * (COUNTERS + 256)));
  private readonly controlF32 = new Float32Array(this.control.buffer);
  private readonly helpers: Worker[] = [];

  /** numThreads ≥ 1; helpers start now and pick up their first job once running. */
  constructor(
    private readonly exports: GemmExports,
    module: WasmModule,
    memory: WasmMemory,
    readonly numThreads: number,
  ) {
    const threads = Math.min(numThreads, 256);
    for (let index = 1; index < threads; index++) {
      const worker = new Worker(HELPER, {
        eval: true,
        execArgv: [],
        workerData: { module, memory, control: this.control.buffer, index },
      });
      worker.unref();
      this.helpers.push(worker);
    }
  }

  /**
   * Runs one job on `threads` threads (≤ numThreads), the caller taking share 0; returns when
   * all shares are done. args: a, packed, out, m, n, k, accumulate, numPanels, w (byte offsets
   * and sizes); eps for OP_RMS_NORM. Throws when a helper's share trapped.
   */
  run(op: number, args: readonly number[], threads: number, eps = 0): void {
    const c = this.control;
    this.controlF32[EPS] = eps;
    const nt = Math.max(1, Math.min(threads, this.numThreads, args[7]!));
    c[ARGS] = op;
    for (let i = 0; i < args.length; i++) c[ARGS + 1 + i] = args[i]!;
    c[NUM_THREADS] = nt;
    Atomics.store(c, PENDING, nt - 1);
    for (let t = 1; t < nt; t++) {
      Atomics.add(c, COUNTERS + t, 1);
      Atomics.notify(c, COUNTERS + t);
    }
    runShare(this.exports, c, 0, nt);
    let pending = Atomics.load(c, PENDING);
    for (let i = 0; pending !== 0 && i < SPIN; i++) pending = Atomics.load(c, PENDING);
    while (pending !== 0) {
      Atomics.wait(c, PENDING, pending, 1000);
      pending = Atomics.load(c, PENDING);
    }
    if (Atomics.exchange(c, ERROR, 0) !== 0) {
      throw new Error("the wasm GEMM trapped on a helper thread (out-of-bounds shape?)");
    }
  }

  /** Stops the helpers (tests; a process exit stops them anyway). */
  async close(): Promise<void> {
    await Promise.all(this.helpers.map((w) => w.terminate()));
  }
}
