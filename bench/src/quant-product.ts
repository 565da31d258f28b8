// One projection product, [N × K] = [2048 × 768] weights (llama-110m's FFN shape), at several
// activation row counts M: f32 (oneDNN packed) against the native bf16/int8 product
// (quant-matmul.cc) with f32 or bf16 activations (KILN_ACTIVATION_DTYPE; ADR 0020). Prints ms per
// product and GFLOP/s, all variants in one run.
//   tsx bench/src/quant-product.ts [--threads 2] [--rows 1,4,16,64,256]
// The 6 MiB f32 matrix fits the last-level cache: at M = 1 this measures the kernels, not DRAM
// (bench:roofline and forward.ts do).
import { parseArgs } from "node:util";
import {
  type ActivationDtype,
  createGemm,
  gemmForWeightDtype,
  type WeightDtype,
} from "@kiln/kernels";

const VARIANTS: readonly (readonly [WeightDtype, ActivationDtype])[] = [
  ["f32", "f32"],
  ["int8", "f32"],
  ["int8", "bf16"],
  ["bf16", "f32"],
  ["bf16", "bf16"],
];

function main(): void {
  const { values } = parseArgs({
    options: {
      threads: { type: "string", default: "2" },
      rows: { type: "string", default: "1,4,16,64,256" },
    },
  });
  const numThreads = Number(values.threads);
  const base = createGemm({ numThreads });
  const [n, k] = [2048, 768];
  const w = Float32Array.from({ length: n * k }, (_, i) => Math.sin(i) * 0.05);
  console.log(`${n} × ${k} weights, ${numThreads} threads: ms per product (GFLOP/s)`);
  console.log(["M", ...VARIANTS.map(([d, a]) => `${d} w / ${a} act`)].join(" | "));
  for (const m of values.rows.split(",").map(Number)) {
    const a = Float32Array.from({ length: m * k }, (_, i) => Math.cos(i));
    const out = new Float32Array(m * n);
    const row: string[] = [String(m)];
    for (const [dtype, activations] of VARIANTS) {
      const gemm = gemmForWeightDtype(base, dtype, { numThreads, activations });
      const packed = gemm.packWeights(w, n, k);
      for (let i = 0; i < 5; i++) gemm.matmulPacked(a, packed, out, m);
      const reps = m >= 64 ? 20 : 100;
      const start = performance.now();
      for (let i = 0; i < reps; i++) gemm.matmulPacked(a, packed, out, m);
      const ms = (performance.now() - start) / reps;
      row.push(`${ms.toFixed(3)} (${((2 * m * n * k) / ms / 1e6).toFixed(0)})`);
    }
    console.log(row.join(" | "));
  }
}

main();
