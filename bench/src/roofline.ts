// The machine's bounds for the CPU backend (issue 20): streaming read bandwidth as the decode
// step sees it (a one-row product against a weight matrix far larger than the caches, so every
// call streams it from DRAM) on one thread, on two threads of one product, and as two processes
// streaming at once (what two tensor-parallel ranks do); and the GEMM peak at a prefill shape.
// Then the decode bound they imply for llama-110m (f32, 434 MB read per token).
//   npm run bench:roofline -w @kiln/bench [-- --mib 256 --seconds 2]
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { describeNativeGemm, type Gemm, loadNativeGemm } from "@kiln/kernels";

const { values } = parseArgs({
  options: {
    mib: { type: "string", default: "256" },
    seconds: { type: "string", default: "2" },
    child: { type: "string" },
  },
});
const seconds = Number(values.seconds);
/** llama-110m f32 bytes streamed per decode token: layers 324 MiB + lm_head 94 MiB (+ norms). */
const LLAMA_110M_BYTES = 434e6;
const K = 2048;

function gemmOf(numThreads: number): Gemm {
  const gemm = loadNativeGemm({ numThreads });
  if (gemm === null) throw new Error("the native GEMM addon is not built (npm run build)");
  return gemm;
}

function randomArray(len: number): Float32Array {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = Math.random() - 0.5;
  return out;
}

/** GB/s of `out[1,N] = x[1,K]·W[N,K]ᵀ` over a `mib`-MiB matrix, repeated for `seconds`. */
function streamBandwidth(numThreads: number, mib: number): number {
  const gemm = gemmOf(numThreads);
  const n = Math.floor((mib * 2 ** 20) / 4 / K);
  const packed = gemm.packWeights(randomArray(n * K), n, K);
  const x = randomArray(K);
  const out = new Float32Array(n);
  gemm.matmulPacked(x, packed, out, 1); // warm
  let numCalls = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    gemm.matmulPacked(x, packed, out, 1);
    numCalls++;
  }
  const s = (performance.now() - t0) / 1000;
  return (numCalls * n * K * 4) / s / 1e9;
}

/** GFLOP/s of a packed product at a prefill shape (M 512, N 2048, K 768). */
function gemmPeak(numThreads: number): number {
  const gemm = gemmOf(numThreads);
  const [m, n, k] = [512, 2048, 768];
  const packed = gemm.packWeights(randomArray(n * k), n, k);
  const a = randomArray(m * k);
  const out = new Float32Array(m * n);
  gemm.matmulPacked(a, packed, out, m);
  let numCalls = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    gemm.matmulPacked(a, packed, out, m);
    numCalls++;
  }
  return (2 * m * n * k * numCalls) / ((performance.now() - t0) / 1000) / 1e9;
}

/** Runs `count` copies of this script streaming at once; resolves with each one's GB/s. */
function concurrentStreams(count: number, mib: number): Promise<number[]> {
  const script = process.argv[1]!;
  const runs = Array.from({ length: count }, () => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, script, "--child", String(mib), "--seconds", String(seconds)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    return new Promise<number>((ok, fail) => {
      child.on("exit", (code) =>
        code === 0 ? ok(Number(text.trim())) : fail(new Error(`child exited ${code}`)),
      );
    });
  });
  return Promise.all(runs);
}

const fmt = (x: number) => x.toFixed(1);

async function main(): Promise<void> {
  if (values.child !== undefined) {
    process.stdout.write(`${streamBandwidth(1, Number(values.child))}\n`);
    return;
  }
  const mib = Number(values.mib);
  console.log(`roofline: ${describeNativeGemm()}; ${mib} MiB matrices, ${seconds} s per figure`);
  const one = streamBandwidth(1, mib);
  const twoThreads = streamBandwidth(2, mib);
  const twoProcs = await concurrentStreams(2, mib / 2);
  const twoProcsSum = twoProcs[0]! + twoProcs[1]!;
  console.log(`DRAM read, one-row product, 1 thread:            ${fmt(one)} GB/s`);
  console.log(`DRAM read, one-row product, 2 threads:           ${fmt(twoThreads)} GB/s`);
  console.log(
    `DRAM read, 2 processes at once (1 thread each):  ${twoProcs.map(fmt).join(" + ")} = ${fmt(twoProcsSum)} GB/s (${(twoProcsSum / one).toFixed(2)}× one thread)`,
  );
  console.log(`GEMM peak, M 512 N 2048 K 768, 1 thread:         ${fmt(gemmPeak(1))} GFLOP/s`);
  console.log(`GEMM peak, M 512 N 2048 K 768, 2 threads:        ${fmt(gemmPeak(2))} GFLOP/s`);
  const bound = (gbps: number) => (gbps * 1e9) / LLAMA_110M_BYTES;
  console.log(
    `llama-110m f32 decode bound (434 MB a token): 1 thread ${fmt(bound(one))} tok/s, ` +
      `2 threads ${fmt(bound(twoThreads))} tok/s, two ranks at once ${fmt(bound(twoProcsSum))} tok/s ` +
      `(the most tensor parallelism T = 2 can gain here: ${(twoProcsSum / one).toFixed(2)}×)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
