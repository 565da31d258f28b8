// GFLOP/s of the CPU backend's matrix multiply, out[M,N] = a[M,K]·w[N,K]ᵀ at the Llama-110M
// shapes (K = 768; N = 768 for attention projections, 2048 for the FFN), weights hot in cache:
// the native library on 1 and 2 threads — on plain weights (dnnl_sgemm, "sgemm") and on weights
// packed once (matmul primitive, "packed", what the forward pass uses) — against the TypeScript
// fallback. See ADR 0002.
//   tsx bench/src/gemm.ts [--threads 1,2] [--passes 3] [--pass-ms 150] [--no-typescript]
// Two-thread numbers move with whatever else runs on the machine; run it on a quiet one.
import { parseArgs } from "node:util";
import { describeNativeGemm, type Gemm, loadNativeGemm, typescriptGemm } from "@kiln/kernels";

const K = 768;
const NS = [768, 2048];
const MS = [1, 8, 32, 128];
/** The target: GEMM ≥ 100 GFLOP/s at M=32, K=768, N=2048 on two threads. */
const TARGET = { m: 32, n: 2048, numThreads: 2, gflops: 100 };

interface Row {
  readonly label: string;
  readonly numThreads: number;
  readonly gemm: Gemm;
  readonly isPacked: boolean;
}

function randomArray(len: number): Float32Array {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = Math.random() - 0.5;
  return out;
}

/** Median over `numPasses` passes of ~passMs each; reps per pass calibrated once. */
function measureGflops(row: Row, m: number, n: number, numPasses: number, passMs: number) {
  const { gemm } = row;
  const a = randomArray(m * K); // [M, K]
  const w = randomArray(n * K); // [N, K]
  const out = new Float32Array(m * n); // [M, N]
  const packed = row.isPacked ? gemm.packWeights(w, n, K) : null;
  const call =
    packed === null
      ? () => gemm.matmulTransB(a, w, out, m, n, K)
      : () => gemm.matmulPacked(a, packed, out, m);
  call(); // warm: JIT, thread team, caches
  let numReps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let r = 0; r < numReps; r++) call();
    const ms = performance.now() - t0;
    if (ms >= passMs / 4) {
      numReps = Math.max(1, Math.round((numReps * passMs) / ms));
      break;
    }
    numReps *= 2;
  }
  const gflops: number[] = [];
  for (let p = 0; p < numPasses; p++) {
    const t0 = performance.now();
    for (let r = 0; r < numReps; r++) call();
    const seconds = (performance.now() - t0) / 1e3;
    gflops.push((2 * m * n * K * numReps) / seconds / 1e9);
  }
  gflops.sort((x, y) => x - y);
  return gflops[Math.floor(numPasses / 2)]!;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      threads: { type: "string", default: "1,2" },
      passes: { type: "string", default: "3" },
      "pass-ms": { type: "string", default: "150" },
      "no-typescript": { type: "boolean", default: false },
    },
  });
  const threadCounts = values.threads.split(",").map(Number);
  const numPasses = Number(values.passes);
  const passMs = Number(values["pass-ms"]);

  const rows: Row[] = [];
  for (const isPacked of [false, true]) {
    for (const numThreads of threadCounts) {
      const gemm = loadNativeGemm({ numThreads });
      const label = `${gemm?.name} ${isPacked ? "packed" : "sgemm"}`;
      if (gemm) rows.push({ label, numThreads, gemm, isPacked });
    }
  }
  if (!values["no-typescript"]) {
    rows.push({ label: "typescript", numThreads: 1, gemm: typescriptGemm, isPacked: false });
  }

  console.log(
    `CPU GEMM out[M,N] = a[M,K]·w[N,K]ᵀ, K=${K}, GFLOP/s (median of ${numPasses} passes)`,
  );
  console.log(`native: ${describeNativeGemm()}`);
  const shapes = NS.flatMap((n) => MS.map((m) => ({ m, n })));
  const header = shapes.map((s) => `N${s.n} M${s.m}`.padStart(11)).join("");
  console.log(`${"implementation".padEnd(15)}${"threads".padStart(8)}${header}`);

  const notes: string[] = [];
  for (const row of rows) {
    const cells = shapes.map((s) => {
      const gflops = measureGflops(row, s.m, s.n, numPasses, passMs);
      const isTarget = s.m === TARGET.m && s.n === TARGET.n && row.numThreads === TARGET.numThreads;
      if (isTarget && row.label !== "typescript") notes.push(targetNote(row.label, gflops));
      return gflops.toFixed(1).padStart(11);
    });
    console.log(`${row.label.padEnd(15)}${String(row.numThreads).padStart(8)}${cells.join("")}`);
  }
  for (const note of notes) console.log(note);
}

function targetNote(label: string, gflops: number): string {
  const verdict =
    gflops >= TARGET.gflops
      ? "met"
      : "NOT met (two-thread numbers need both cores free: is the machine busy?)";
  return (
    `target ≥ ${TARGET.gflops} GFLOP/s at M=${TARGET.m} N=${TARGET.n} on ${TARGET.numThreads} threads (${label}): ` +
    `${gflops.toFixed(1)}, ${verdict}`
  );
}

main();
