import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { requireAvailable } from "@kiln/test-support";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createGemm, describeNativeGemm, type Gemm, loadNativeGemm, typescriptGemm } from "./gemm";

const ADDON_FILE = fileURLToPath(new URL("../../build/Release/kiln_gemm.node", import.meta.url));
const isAddonBuilt = existsSync(ADDON_FILE);
const native = loadNativeGemm({ numThreads: 2 });
// Without the addon the native variants skip locally; under CI=true the suite fails instead.
requireAvailable(
  "the native GEMM (kiln_gemm addon)",
  native !== null,
  "build it: npm run build -w @kiln/kernels",
);

/** Deterministic values in [-1, 1) (xorshift32), so failures reproduce. */
function randomArray(len: number, seed: number): Float32Array {
  const out = new Float32Array(len);
  let x = seed | 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/** A view of `len` elements starting `offset` elements into a larger, poisoned buffer. */
function view(data: Float32Array, offset: number): Float32Array {
  const backing = new Float32Array(offset + data.length + 3).fill(Number.NaN);
  const v = backing.subarray(offset, offset + data.length);
  v.set(data);
  return v;
}

interface Reference {
  /** out[M, N] in float64. */
  readonly want: Float64Array;
  /** Σ|terms| per entry: what fp32 rounding error is proportional to. */
  readonly scale: Float64Array;
}

/** float64 reference of out[M,N] = a[M,K]·w[N,K]ᵀ (+ init). */
function reference(
  a: Float32Array,
  w: Float32Array,
  m: number,
  n: number,
  k: number,
  init?: Float32Array,
): Reference {
  const want = new Float64Array(m * n); // [M, N]
  const scale = new Float64Array(m * n); // [M, N]
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = init ? init[i * n + j]! : 0;
      let absSum = Math.abs(s);
      for (let p = 0; p < k; p++) {
        const term = a[i * k + p]! * w[j * k + p]!;
        s += term;
        absSum += Math.abs(term);
      }
      want[i * n + j] = s;
      scale[i * n + j] = absSum;
    }
  }
  return { want, scale };
}

/** Largest error relative to each entry's Σ|terms| (plain relative error blows up near 0). */
function maxRelError(got: Float32Array, ref: Reference): number {
  let worst = 0;
  for (let i = 0; i < ref.want.length; i++) {
    const err = Math.abs(got[i]! - ref.want[i]!);
    worst = Math.max(worst, err / Math.max(ref.scale[i]!, 1e-30));
  }
  return worst;
}

interface Case {
  m: number;
  n: number;
  k: number;
  offset: number;
  isAccumulate: boolean;
  seed: number;
}

function checkCase(gemm: Gemm, c: Case): number {
  const a = view(randomArray(c.m * c.k, c.seed), c.offset);
  const w = view(randomArray(c.n * c.k, c.seed + 1), c.offset + 1);
  const init = randomArray(c.m * c.n, c.seed + 2);
  const out = view(c.isAccumulate ? init : new Float32Array(c.m * c.n).fill(7), c.offset + 2);
  gemm.matmulTransB(a, w, out, c.m, c.n, c.k, c.isAccumulate);
  return maxRelError(out, reference(a, w, c.m, c.n, c.k, c.isAccumulate ? init : undefined));
}

/** Like checkCase, through packWeights + matmulPacked (w is poisoned after packing). */
function checkPackedCase(gemm: Gemm, c: Case): number {
  const a = view(randomArray(c.m * c.k, c.seed), c.offset);
  const wData = randomArray(c.n * c.k, c.seed + 1);
  const w = view(wData, c.offset + 1);
  const packed = gemm.packWeights(w, c.n, c.k);
  expect(packed).toMatchObject({ n: c.n, k: c.k, kind: gemm.name });
  // A copying gemm no longer reads w; the TypeScript one aliases it, so keep it intact there.
  if (packed.numBytes > 0) w.fill(Number.NaN);
  const init = randomArray(c.m * c.n, c.seed + 2);
  const out = view(c.isAccumulate ? init : new Float32Array(c.m * c.n).fill(7), c.offset + 2);
  gemm.matmulPacked(a, packed, out, c.m, c.isAccumulate);
  return maxRelError(out, reference(a, wData, c.m, c.n, c.k, c.isAccumulate ? init : undefined));
}

/** M of every decode batch and prefill chunk size class, with odd N and K. */
const packedCases: Case[] = [1, 3, 8, 32, 128].flatMap((m, i) => [
  { m, n: 33, k: 65, offset: i, isAccumulate: false, seed: 20 + i },
  { m, n: 301, k: 129, offset: 1, isAccumulate: true, seed: 30 + i },
  { m, n: 7, k: 770, offset: 0, isAccumulate: i % 2 === 0, seed: 40 + i },
]);

const fixedCases: Case[] = [
  { m: 1, n: 1, k: 1, offset: 0, isAccumulate: false, seed: 1 },
  { m: 1, n: 300, k: 129, offset: 5, isAccumulate: false, seed: 2 },
  { m: 1, n: 64, k: 768, offset: 1, isAccumulate: true, seed: 3 },
  { m: 3, n: 5, k: 7, offset: 3, isAccumulate: true, seed: 4 },
  { m: 17, n: 33, k: 65, offset: 0, isAccumulate: false, seed: 5 },
  { m: 32, n: 96, k: 768, offset: 7, isAccumulate: true, seed: 6 },
  { m: 8, n: 2048, k: 64, offset: 2, isAccumulate: false, seed: 7 },
];

const implementations: Array<[string, Gemm | null]> = [
  ["typescript", typescriptGemm],
  ["native", native],
];

describe.each(implementations)("%s gemm", (label, gemm) => {
  const run = gemm === null ? it.skip : it;

  run("matches a float64 reference on fixed shapes, views and accumulate", () => {
    for (const c of fixedCases) expect(checkCase(gemm!, c), JSON.stringify(c)).toBeLessThan(1e-4);
  });

  run("matches a float64 reference on random shapes (property)", () => {
    const arbCase = fc.record({
      m: fc.integer({ min: 1, max: 24 }),
      n: fc.integer({ min: 1, max: 40 }),
      k: fc.integer({ min: 1, max: 80 }),
      offset: fc.integer({ min: 0, max: 9 }),
      isAccumulate: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    });
    fc.assert(
      fc.property(arbCase, (c) => checkCase(gemm!, c) < 1e-4),
      { numRuns: label === "native" ? 200 : 60 },
    );
  });

  run("packed weights match a float64 reference for M in 1, 3, 8, 32, 128", () => {
    for (const c of packedCases) {
      expect(checkPackedCase(gemm!, c), JSON.stringify(c)).toBeLessThan(1e-4);
    }
  });

  run("packed weights match a float64 reference on random shapes (property)", () => {
    const arbCase = fc.record({
      m: fc.integer({ min: 1, max: 300 }),
      n: fc.integer({ min: 1, max: 40 }),
      k: fc.integer({ min: 1, max: 80 }),
      offset: fc.integer({ min: 0, max: 9 }),
      isAccumulate: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    });
    fc.assert(
      fc.property(arbCase, (c) => checkPackedCase(gemm!, c) < 1e-4),
      { numRuns: 40 },
    );
  });

  run("packed: k = 0 is an empty sum, m = 0 a no-op, and short arrays throw", () => {
    const out = new Float32Array([5, 6]);
    const empty = gemm!.packWeights(new Float32Array(0), 2, 0);
    gemm!.matmulPacked(new Float32Array(0), empty, out, 1, true);
    expect([...out]).toEqual([5, 6]);
    gemm!.matmulPacked(new Float32Array(0), empty, out, 1);
    expect([...out]).toEqual([0, 0]);
    const packed = gemm!.packWeights(new Float32Array(8).fill(1), 2, 4);
    gemm!.matmulPacked(new Float32Array(0), packed, out, 0);
    expect([...out]).toEqual([0, 0]);
    expect(() => gemm!.packWeights(new Float32Array(7), 2, 4)).toThrow(RangeError);
    if (label === "native") {
      expect(() => gemm!.matmulPacked(new Float32Array(4), packed, out, 2)).toThrow(RangeError);
    }
  });

  run("treats k = 0 as an empty sum and m = 0 or n = 0 as a no-op", () => {
    const out = new Float32Array([5, 6]);
    gemm!.matmulTransB(new Float32Array(0), new Float32Array(0), out, 1, 2, 0, true);
    expect([...out]).toEqual([5, 6]);
    gemm!.matmulTransB(new Float32Array(0), new Float32Array(0), out, 1, 2, 0);
    expect([...out]).toEqual([0, 0]);
    out.fill(3);
    gemm!.matmulTransB(new Float32Array(0), new Float32Array(8), out, 0, 2, 4);
    expect([...out]).toEqual([3, 3]);
  });
});

describe("native gemm addon", () => {
  it("loads whenever the addon is built", () => {
    // A built but unloadable addon (say libdnnl2 missing) must fail here, not fall back silently.
    if (isAddonBuilt) expect(native, describeNativeGemm()).not.toBeNull();
    // Without oneDNN, the addon's own GEMM (source build or committed prebuilt; ADR 0022).
    expect(createGemm().name).toMatch(isAddonBuilt ? /^onednn$/ : /^native-/);
  });

  it.skipIf(native === null)("rejects weights packed by another implementation", () => {
    const w = new Float32Array(6).fill(1);
    const out = new Float32Array(2);
    const fromTs = typescriptGemm.packWeights(w, 2, 3);
    const fromNative = native!.packWeights(w, 2, 3);
    expect(() => native!.matmulPacked(w, fromTs, out, 1)).toThrow(TypeError);
    expect(() => typescriptGemm.matmulPacked(w, fromNative, out, 1)).toThrow(TypeError);
  });

  it("rejects a non-positive thread count", () => {
    expect(() => loadNativeGemm({ numThreads: 0 })).toThrow(RangeError);
    expect(() => createGemm({ numThreads: 1.5 })).toThrow(RangeError);
  });

  it.skipIf(native === null)("gives the same result on 1 and 2 threads at a real shape", () => {
    const m = 32;
    const n = 2048;
    const k = 768;
    const a = randomArray(m * k, 11);
    const w = randomArray(n * k, 12);
    const out1 = new Float32Array(m * n); // [M, N]
    const out2 = new Float32Array(m * n); // [M, N]
    loadNativeGemm({ numThreads: 1 })!.matmulTransB(a, w, out1, m, n, k);
    loadNativeGemm({ numThreads: 2 })!.matmulTransB(a, w, out2, m, n, k);
    const ref = reference(a, w, m, n, k);
    expect(maxRelError(out1, ref)).toBeLessThan(1e-4);
    expect(maxRelError(out2, ref)).toBeLessThan(1e-4);
  });

  it.skipIf(native === null)(
    "throws on arrays shorter than their shape or of the wrong type",
    () => {
      const small = new Float32Array(4);
      expect(() => native!.matmulTransB(small, small, small, 2, 2, 3)).toThrow(RangeError);
      const f64 = new Float64Array(4) as unknown as Float32Array;
      expect(() => native!.matmulTransB(f64, small, small, 2, 2, 2)).toThrow(TypeError);
    },
  );

  it.skipIf(native === null)(
    "runs in worker threads and releases its helpers when they exit",
    async () => {
      const threadCount = () =>
        Number(/Threads:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
      const before = threadCount();
      for (let round = 0; round < 2; round++) {
        const result = await runInWorker(ADDON_FILE);
        expect(result.out).toEqual([4, 4, 4]); // each entry sums 8 products of 1·0.5
      }
      // Each worker's OpenMP team (3 helpers) must go with it: no growth per worker.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(threadCount()).toBeLessThanOrEqual(before + 1);
    },
  );
});

/** Multiplies ones by halves inside a fresh worker_thread with a 4-thread team, then exits. */
async function runInWorker(addonFile: string): Promise<{ out: number[] }> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const addon = require(workerData.addonFile);
    const m = 2, n = 3, k = 8;
    const a = new Float32Array(m * k).fill(1), w = new Float32Array(n * k).fill(0.5);
    const out = new Float32Array(m * n);
    for (let i = 0; i < 20; i++) addon.sgemmTransB(a, w, out, m, n, k, false, 4);
    parentPort.postMessage({ out: [...out.subarray(n)] });
  `;
  const worker = new Worker(code, { eval: true, workerData: { addonFile } });
  const result = await new Promise<{ out: number[] }>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  return result;
}
