import { mulberry32, requireAvailable } from "@kiln/test-support";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NativeAttention } from "../src/cpu/attention-native";
import { typescriptGemm } from "../src/cpu/gemm";
import { createKvLayer, type KvPool } from "../src/cpu/kv-cache";
import { setNativePrefetch } from "../src/cpu/native-addon";
import { PagedAttention } from "../src/cpu/paged-attention";
import { f32ToBf16Bits } from "../src/cpu/weight-formats";
import { referenceCausalAttention } from "../src/reference/dense-attention";
import { maxRelativeError, randomArray } from "./helpers/random-model";

interface Case {
  readonly numKvHeads: number;
  readonly groupSize: number;
  readonly headDim: number;
  readonly blockSize: number;
  readonly seqs: readonly { readonly prefixLen: number; readonly queryLen: number }[];
  readonly seed: number;
  /**
   * simd: the WebAssembly kernels (required to be available when headDim % 4 = 0); typescript:
   * the TS loop; gemm: chunks of ≥ 2 tokens as matrix multiplies, with tiny score tiles;
   * native: the addon's kernel (2 threads) on plain arrays; native-wasm: the same reading a SIMD
   * layer's WebAssembly memory, with chunks of ≥ 4 tokens through the gemm; native-bf16: the
   * addon's kernel on a bf16 pool (KILN_KV_CACHE_DTYPE=bf16), against the reference on the
   * same bf16 values.
   */
  readonly path: Path;
}

type Path = "simd" | "typescript" | "gemm" | "native" | "native-wasm" | "native-bf16";

/** Element i of a K or V pool as a number (bf16 bits widened exactly). */
function poolValue(pool: KvPool, i: number): number {
  if (pool instanceof Float32Array) return pool[i]!;
  return new Float32Array(new Uint32Array([pool[i]! << 16]).buffer)[0]!;
}

/**
 * Null without the addon: its variants are skipped locally (gemm.test.ts fails if the addon is
 * built but does not load) and fail under CI=true.
 */
const native = NativeAttention.tryCreate({ numThreads: 2 });
requireAvailable(
  "the native attention kernel (kiln_gemm addon)",
  native !== null,
  "build it: npm run build -w @kiln/kernels",
);

function attentionOptions(path: Path) {
  switch (path) {
    case "gemm":
      return { gemm: typescriptGemm, gemmMinQueryLen: 2, gemmMaxTileScores: 200 };
    case "native":
    case "native-bf16":
      return { native };
    case "native-wasm":
      return { native, gemm: typescriptGemm, gemmMinQueryLen: 4 };
    default:
      return {};
  }
}

function shuffled(n: number, rand: () => number): number[] {
  const ids = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return ids;
}

/** Runs paged attention on random data and returns its error against the dense reference. */
function pagedVersusDense(c: Case): number {
  return runPaged(c).worst;
}

/** pagedVersusDense's run: the output rows and their worst error against the reference. */
function runPaged(c: Case): { readonly out: Float32Array; readonly worst: number } {
  const rand = mulberry32(c.seed);
  const numHeads = c.numKvHeads * c.groupSize;
  const { headDim, blockSize } = c;
  const qDim = numHeads * headDim;
  const kvDim = c.numKvHeads * headDim;
  const blocksPerSeq = c.seqs.map((s) => Math.ceil((s.prefixLen + s.queryLen) / blockSize));
  // Spare blocks hold garbage that must never be read.
  const numBlocks = blocksPerSeq.reduce((a, b) => a + b, 0) + 3;
  const ids = shuffled(numBlocks, rand);
  const tables: number[] = [];
  const offsets = [0];
  for (const n of blocksPerSeq) {
    tables.push(...ids.splice(0, n));
    offsets.push(tables.length);
  }
  const blockStride = c.numKvHeads * blockSize * headDim;
  const maxContextLen = Math.max(...c.seqs.map((s) => s.prefixLen + s.queryLen));
  const layer = createKvLayer(
    { numLayers: 1, numKvHeads: c.numKvHeads, headDim, blockSize, numBlocks },
    {
      maxContextLen,
      useSimd: c.path === "simd" || c.path === "native-wasm",
      dtype: c.path === "native-bf16" ? "bf16" : "f32",
    },
  );
  const isWasm = c.path === "simd" || c.path === "native-wasm";
  expect(layer.simd !== null).toBe(isWasm && headDim % 4 === 0);
  const kCache = layer.keys; // [numBlocks, kvHeads, bs, hd]
  const vCache = layer.values;
  const fill = (pool: KvPool) => {
    const data = randomArray(numBlocks * blockStride, rand);
    if (pool instanceof Float32Array) pool.set(data);
    else pool.set(Array.from(data, f32ToBf16Bits));
  };
  fill(kCache);
  fill(vCache);
  // q sits inside wider rows at an offset, as in the fused qkv buffer.
  const qStride = qDim + 5;
  const qOffset = 3;
  const numTokens = c.seqs.reduce((a, s) => a + s.queryLen, 0);
  const q = randomArray(numTokens * qStride, rand, 2);
  const out = new Float32Array(numTokens * qDim);
  const attention = new PagedAttention(
    { numHeads, numKvHeads: c.numKvHeads, headDim, blockSize },
    attentionOptions(c.path),
  );
  attention.run(out, q, qStride, qOffset, layer, {
    queryLens: Int32Array.from(c.seqs.map((s) => s.queryLen)),
    contextLens: Int32Array.from(c.seqs.map((s) => s.prefixLen + s.queryLen)),
    blockTableOffsets: Int32Array.from(offsets),
    blockTables: Int32Array.from(tables),
  });

  let worst = 0;
  let tokenStart = 0;
  c.seqs.forEach((s, si) => {
    const contextLen = s.prefixLen + s.queryLen;
    const k = new Float64Array(contextLen * kvDim); // dense [contextLen, kvHeads × hd]
    const v = new Float64Array(contextLen * kvDim);
    for (let pos = 0; pos < contextLen; pos++) {
      const block = tables[offsets[si]! + Math.floor(pos / blockSize)]!;
      for (let g = 0; g < c.numKvHeads; g++) {
        const src = block * blockStride + (g * blockSize + (pos % blockSize)) * headDim;
        for (let d = 0; d < headDim; d++) {
          k[pos * kvDim + g * headDim + d] = poolValue(kCache, src + d);
          v[pos * kvDim + g * headDim + d] = poolValue(vCache, src + d);
        }
      }
    }
    const qDense = new Float64Array(s.queryLen * qDim);
    for (let i = 0; i < s.queryLen; i++) {
      for (let j = 0; j < qDim; j++) {
        qDense[i * qDim + j] = q[(tokenStart + i) * qStride + qOffset + j]!;
      }
    }
    const expected = referenceCausalAttention(qDense, k, v, s.queryLen, contextLen, {
      numHeads,
      numKvHeads: c.numKvHeads,
      headDim,
    });
    const actual = out.subarray(tokenStart * qDim, (tokenStart + s.queryLen) * qDim);
    worst = Math.max(worst, maxRelativeError(actual, expected));
    tokenStart += s.queryLen;
  });
  return { out, worst };
}

const seqArb = fc.record({
  prefixLen: fc.integer({ min: 0, max: 40 }),
  queryLen: fc.integer({ min: 1, max: 12 }),
});

const paths = (
  ["simd", "typescript", "gemm", "native", "native-wasm", "native-bf16"] as const
).filter((p) => native !== null || !p.startsWith("native"));
const variants = [1, 2, 4, 8].flatMap((groupSize) => paths.map((path) => ({ groupSize, path })));

describe("PagedAttention", () => {
  it.each(variants)(
    "matches dense float64 attention: GQA $groupSize, $path",
    ({ groupSize, path }) => {
      fc.assert(
        fc.property(
          fc.record({
            numKvHeads: fc.integer({ min: 1, max: 3 }),
            groupSize: fc.constant(groupSize),
            path: fc.constant(path),
            headDim: fc.constantFrom(1, 4, 8, 13, 32, 64),
            blockSize: fc.constantFrom(1, 2, 3, 4, 16),
            seqs: fc.array(seqArb, { minLength: 1, maxLength: 4 }),
            seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          }),
          (c) => {
            expect(pagedVersusDense(c)).toBeLessThan(1e-4);
          },
        ),
        { numRuns: 40 },
      );
    },
  );

  it.each(paths)("handles a long prefix and a long chunk (%s)", (path) => {
    const c: Case = {
      path,
      numKvHeads: 2,
      groupSize: 4,
      headDim: 64,
      blockSize: 16,
      seqs: [
        { prefixLen: 300, queryLen: 1 },
        { prefixLen: 0, queryLen: 33 },
      ],
      seed: 7,
    };
    expect(pagedVersusDense(c)).toBeLessThan(1e-4);
  });

  it.skipIf(native === null)(
    "native-bf16: writes the same bits whether it asks for keys and values ahead or not",
    () => {
      const c: Case = {
        path: "native-bf16",
        numKvHeads: 3,
        groupSize: 1,
        headDim: 64,
        blockSize: 16,
        seqs: [
          { prefixLen: 150, queryLen: 1 },
          { prefixLen: 70, queryLen: 1 },
          { prefixLen: 33, queryLen: 5 },
        ],
        seed: 11,
      };
      try {
        const runs = [false, true].map((on) => {
          expect(setNativePrefetch(on)).toBe(true);
          return runPaged(c);
        });
        expect(runs[1]?.worst).toBeLessThan(1e-4);
        expect(runs[1]?.out).toEqual(runs[0]?.out);
      } finally {
        setNativePrefetch(true);
      }
    },
  );

  it.skipIf(native === null)("native: rejects block ids outside the pool", () => {
    const shape = { numHeads: 2, numKvHeads: 1, headDim: 4, blockSize: 2 };
    const layer = createKvLayer(
      { numLayers: 1, numKvHeads: 1, headDim: 4, blockSize: 2, numBlocks: 2 },
      { maxContextLen: 8, useSimd: false },
    );
    const attention = new PagedAttention(shape, { native });
    const batch = (table: number[]) => ({
      queryLens: Int32Array.of(1),
      contextLens: Int32Array.of(3),
      blockTableOffsets: Int32Array.of(0, table.length),
      blockTables: Int32Array.from(table),
    });
    const q = new Float32Array(8);
    const out = new Float32Array(8);
    expect(() => attention.run(out, q, 8, 0, layer, batch([0, 2]))).toThrow(RangeError);
    expect(() => attention.run(out, q, 8, 0, layer, batch([1]))).toThrow(/block table/);
    attention.run(out, q, 8, 0, layer, batch([1, 0]));
  });

  it("rejects head counts that do not group", () => {
    expect(
      () => new PagedAttention({ numHeads: 6, numKvHeads: 4, headDim: 8, blockSize: 16 }),
    ).toThrow(/multiple/);
  });
});
