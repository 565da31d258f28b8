import { type LoadedModel, loadModel, type Tensor, type WeightMap } from "@kiln/model";
import {
  type GoldenCase,
  loadGoldenCases,
  mulberry32,
  requireAvailable,
  STORIES_DIR,
} from "@kiln/test-support";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING } from "../src/backend";
import { createCpuBackend } from "../src/cpu/cpu-backend";
import { typescriptGemm } from "../src/cpu/gemm";
import { CpuModelRunner } from "../src/cpu/model-runner";
import { tryLoadNativeAddon } from "../src/cpu/native-addon";
import { quantizedGemm } from "../src/cpu/quantized-gemm";
import {
  type ActivationDtype,
  bf16ToF32,
  dequantizeInt8,
  f32ToBf16Bits,
  INT8_GROUP_SIZE,
  parseWeightDtype,
  quantizeInt8,
  roundTripWeights,
  toBf16,
  type WeightDtype,
} from "../src/cpu/weight-formats";
import { buildStepInput, goldenNll, greedyGenerate } from "./helpers/step-driver";

// KILN_WEIGHT_DTYPE (ADR 0020): bf16 and int8 (Q8_0-like groups of 32) weight-only formats.

function randomArray(len: number, seed: number, scale = 1): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: len }, () => (rand() * 2 - 1) * scale);
}

describe("weight formats", () => {
  it("parses the dtype names and rejects others", () => {
    expect(parseWeightDtype("int8")).toBe("int8");
    expect(() => parseWeightDtype("fp8")).toThrow(/f32, bf16, int8/);
  });

  it("rounds to bf16 to nearest, ties to even", () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(Number.isNaN(bf16ToF32(toBf16(Float32Array.of(Number.NaN)))[0])).toBe(true);
    const w = randomArray(1000, 1);
    const back = bf16ToF32(toBf16(w));
    for (let i = 0; i < w.length; i++) {
      expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(Math.abs(w[i]!) * 2 ** -8);
    }
  });

  it("quantizes int8 per row and per group of 32, within half a step of each group's scale", () => {
    const n = 3;
    const k = 70; // two full groups and a short one per row
    const w = randomArray(n * k, 2);
    w[5] = 0; // a zero group must not divide by zero
    for (let i = 32; i < 64; i++) w[i] = 0;
    const m = quantizeInt8(w, n, k);
    expect(m.groupsPerRow).toBe(Math.ceil(k / INT8_GROUP_SIZE));
    expect(m.scales[1]).toBe(0);
    const back = dequantizeInt8(m);
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < k; col++) {
        const d = m.scales[row * m.groupsPerRow + Math.floor(col / 32)]!;
        expect(Math.abs(back[row * k + col]! - w[row * k + col]!)).toBeLessThanOrEqual(
          d / 2 + 1e-7,
        );
        expect(Math.abs(m.q[row * k + col]!)).toBeLessThanOrEqual(127);
      }
    }
  });

  it.each(["bf16", "int8"] as const)(
    "%s matmulPacked equals typescriptGemm over the dequantized weights, bit for bit",
    (dtype) => {
      const [m, n, k] = [5, 7, 70];
      const a = randomArray(m * k, 3);
      const w = randomArray(n * k, 4, 0.1);
      const gemm = quantizedGemm(typescriptGemm, dtype, { product: "typescript" });
      const packed = gemm.packWeights(w, n, k);
      expect(packed.numBytes).toBeLessThan(n * k * (dtype === "bf16" ? 2.01 : 1.2));
      const got = randomArray(m * n, 5);
      const want = Float32Array.from(got);
      gemm.matmulPacked(a, packed, got, m, true);
      typescriptGemm.matmulTransB(a, roundTripWeights(w, n, k, dtype), want, m, n, k, true);
      expect(got).toEqual(want);
    },
  );
});

const hasNativeQuant = requireAvailable(
  "the kiln_gemm addon with matmulQuant (quant-matmul.cc)",
  typeof tryLoadNativeAddon()?.matmulQuant === "function",
  "npm run build -w @kiln/kernels",
);

describe.runIf(hasNativeQuant)("the native quantized product (quant-matmul.cc)", () => {
  const addon = tryLoadNativeAddon();
  const paths = ["avx512-vbmi", "avx512-bf16", "avx512", "scalar"] as const;
  type QuantPath = (typeof paths)[number];
  const widest = (addon?.quantIsa?.() ?? "scalar") as QuantPath;
  // Every path this CPU has, narrowest last: pair dot products, AVX-512 multiply-adds, C++.
  const isas = paths.slice(Math.max(0, paths.indexOf(widest)));
  afterEach(() => {
    addon?.quantIsa?.(widest);
    addon?.quantPrefetch?.(true);
  });

  it("reports the widest path and takes a cap", () => {
    expect(addon?.quantIsa?.("scalar")).toBe("scalar");
    expect(() => addon?.quantIsa?.("avx2" as "scalar")).toThrow(
      /avx512-vbmi, avx512-bf16, avx512 or scalar/,
    );
  });

  it("gives the same bits whether int8 products ask for the next panel ahead or not", () => {
    expect(addon?.quantPrefetch?.()).toBe(true); // on by default
    const gemm = quantizedGemm(typescriptGemm, "int8", { product: "native", activations: "bf16" });
    // One row tile (codes widened in registers, or f32 multiply-adds without AVX-512 VBMI), then
    // three (a scratch panel); 10 panels split across threads.
    for (const m of [1, 16]) {
      const [n, k] = [300, 256];
      const a = randomArray(m * k, 6);
      const packed = gemm.packWeights(randomArray(n * k, 7, 0.1), n, k);
      const outs = [false, true].map((on) => {
        expect(addon?.quantPrefetch?.(on)).toBe(on);
        const out = new Float32Array(m * n);
        gemm.matmulPacked(a, packed, out, m);
        return out;
      });
      expect(outs[1]).toEqual(outs[0]);
    }
  });

  it.runIf(widest === "avx512-vbmi")(
    "widens every int8 code by byte lookups to the bits the conversions give",
    () => {
      const [n, k] = [64, 256];
      // Each group of 32 starts with 127, so its scale is 1 and the codes are the values: every
      // code from -127 to 127 occurs.
      const w = Float32Array.from({ length: n * k }, (_, i) =>
        i % INT8_GROUP_SIZE === 0 ? 127 : (i % 255) - 127,
      );
      const gemm = quantizedGemm(typescriptGemm, "int8", {
        product: "native",
        activations: "bf16",
      });
      const packed = gemm.packWeights(w, n, k);
      const a = randomArray(16 * k, 9);
      const product = (m: number) => {
        const out = new Float32Array(m * n);
        gemm.matmulPacked(a.subarray(0, m * k), packed, out, m);
        return out;
      };
      // 16 rows: three row tiles read a scratch panel the conversions widened.
      const converted = product(16);
      // One row tile widens the codes in registers by byte lookups: each row as the 16-row
      // product gave it (a row's sums do not depend on the other rows of its tile).
      for (const m of [1, 6]) expect(product(m)).toEqual(converted.subarray(0, m * n));
    },
  );

  it("refuses the int8 code -128, which symmetric scales never give", () => {
    const q = new Int8Array(32 * 32).fill(3);
    q[40] = -128;
    expect(() => addon?.packQuant?.(q, new Float32Array(32), 32, 32)).toThrow(/\[-127, 127\]/);
  });

  const combos = isas.flatMap((isa) =>
    (["bf16", "int8"] as const).flatMap((dtype) =>
      (["f32", "bf16"] as const).map((activations) => [dtype, activations, isa] as const),
    ),
  );
  it.each(combos)(
    "%s weights, %s activations, %s path: match the TypeScript reference to rounding",
    (dtype, activations, isa) => {
      expect(addon?.quantIsa?.(isa)).toBe(isa);
      for (const [m, n, k] of [
        [1, 9, 64],
        [6, 5, 96],
        [40, 6, 70],
        [4, 7, 70],
        [3, 5, 15],
        [13, 70, 40], // three panels, the last one short; two full row tiles and one of one
        [9, 300, 256], // enough weight bytes to split the panels across threads
      ] as const) {
        const a = randomArray(m * k, 6);
        const w = randomArray(n * k, 7, 0.1);
        const native = quantizedGemm(typescriptGemm, dtype, { product: "native", activations });
        const reference = quantizedGemm(typescriptGemm, dtype, {
          product: "typescript",
          activations,
        });
        const got = randomArray(m * n, 8);
        const want = Float32Array.from(got);
        native.matmulPacked(a, native.packWeights(w, n, k), got, m, true);
        reference.matmulPacked(a, reference.packWeights(w, n, k), want, m, true);
        for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
      }
    },
  );
});

const cases: readonly GoldenCase[] = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const expected = cases.map((c) => c.greedy_ids);
const maxNewTokens = Math.max(...expected.map((ids) => ids.length));
const blockSize = 16;

let model: LoadedModel;
beforeAll(async () => {
  model = await loadModel(STORIES_DIR);
});

/** The checkpoint with every projection replaced by what `dtype` stores: the reference. */
function roundTripModel(dtype: WeightDtype): WeightMap {
  const out = new Map<string, Tensor>();
  for (const [name, t] of model.weights) {
    const isProjection = t.shape.length === 2 && name !== "model.embed_tokens.weight";
    const [n, k] = t.shape as [number, number];
    const tied = model.config.tieWordEmbeddings && name === "model.embed_tokens.weight";
    // Tied embeddings are the lm_head too: the runner quantizes the lm_head copy only.
    const data = isProjection && !tied ? roundTripWeights(t.data, n, k, dtype) : t.data;
    out.set(name, { ...t, data } as Tensor);
  }
  return out;
}

type Product = "native" | "typescript";

/**
 * A runner on TypeScript kernels whose projections are stored as `dtype` and multiply their
 * activations as `activations`.
 */
function runner(
  dtype: WeightDtype,
  weights: WeightMap = model.weights,
  numBlocks = 64,
  product: Product = "typescript",
  activations: ActivationDtype = "f32",
) {
  const gemm =
    dtype === "f32"
      ? typescriptGemm
      : quantizedGemm(typescriptGemm, dtype, { product, activations });
  return new CpuModelRunner(model.config, weights, {
    numBlocks,
    blockSize,
    kernels: "typescript",
    gemm,
  });
}

/** Blocks for every golden case's prompt and continuation at once. */
const goldenNumBlocks =
  cases.length * Math.ceil((Math.max(...prompts.map((p) => p.length)) + maxNewTokens) / blockSize) +
  3;
const goldenOpts = {
  blockSize,
  numBlocks: goldenNumBlocks,
  maxNewTokens,
  isBatched: true,
  chunkLen: 7,
};

/** `subject` generates the reference's greedy tokens (batched, chunked), which are the goldens. */
async function expectReferenceGoldens(
  subject: CpuModelRunner,
  reference: CpuModelRunner,
): Promise<void> {
  const got = await greedyGenerate(subject, prompts, goldenOpts);
  expect(got).toEqual(await greedyGenerate(reference, prompts, goldenOpts));
  expect(got).toEqual(expected);
}

/** exp(NLL) of the golden continuations under `r`, and its ratio to f32's (logged). */
async function goldenPerplexity(r: CpuModelRunner, label: string): Promise<[number, number]> {
  const nll = await goldenNll(r, cases, blockSize);
  const f32 = Math.exp(await goldenNll(runner("f32"), cases, blockSize));
  const ratio = Math.exp(nll) / f32;
  console.log(
    `golden perplexity f32 ${f32.toFixed(4)}, ${label} ${Math.exp(nll).toFixed(4)} (×${ratio.toFixed(5)})`,
  );
  return [nll, ratio];
}

describe.each(["bf16", "int8"] as const)("stories260K with %s weights", (dtype) => {
  const products: Product[] = hasNativeQuant ? ["typescript", "native"] : ["typescript"];
  it.each(products)(
    "%s product: reproduces the greedy goldens token for token, like the f32 pass over the same quantized weights",
    async (product) => {
      const quantized = runner(dtype, model.weights, goldenNumBlocks, product);
      const suffix = product === "native" ? "-native" : "";
      expect(quantized.gemm.name).toBe(`typescript+${dtype}${suffix}`);
      await expectReferenceGoldens(
        quantized,
        runner("f32", roundTripModel(dtype), goldenNumBlocks),
      );
    },
  );

  it("changes the perplexity of the golden texts by under 1% (measured in docs/benchmarks.md)", async () => {
    const f32 = await goldenNll(runner("f32"), cases, blockSize);
    const [quantized, ratio] = await goldenPerplexity(runner(dtype), dtype);
    expect(quantized).not.toBe(f32); // the weights really are quantized
    expect(Math.abs(ratio - 1)).toBeLessThan(0.01);
  });
});

/** The logprob the backend gives its greedy choice after the first golden prompt. */
async function firstLogprob(
  dtype: WeightDtype,
  activationDtype: ActivationDtype = "f32",
): Promise<number> {
  const backend = await createCpuBackend({
    modelDir: STORIES_DIR,
    numBlocks: 4,
    blockSize,
    numThreads: 1,
    weightDtype: dtype,
    activationDtype,
  });
  try {
    const sample = {
      params: DEFAULT_SAMPLING,
      outputIndex: 0,
      promptTokenIds: [],
      outputTokenIds: [],
    };
    const chunk = { tokenIds: prompts[0]!, startPos: 0, blocks: [0], sample };
    return (await backend.step(buildStepInput([chunk], blockSize))).sampled[0]!.logprob;
  } finally {
    await backend.dispose();
  }
}

describe("createCpuBackend with weightDtype (the worker's path, KILN_WEIGHT_DTYPE)", () => {
  it.each(["bf16", "int8"] as const)(
    "%s: the thread's runner reproduces the goldens",
    async (dtype) => {
      const numBlocks = 64;
      const backend = await createCpuBackend({
        modelDir: STORIES_DIR,
        numBlocks,
        blockSize,
        numThreads: 1,
        weightDtype: dtype,
      });
      try {
        const opts = { blockSize, numBlocks, maxNewTokens, isBatched: true };
        expect(await greedyGenerate(backend, prompts, opts)).toEqual(expected);
      } finally {
        await backend.dispose();
      }
    },
  );

  it("the option reaches the thread: the thread's logprobs move with the dtype", async () => {
    const f32 = await firstLogprob("f32");
    expect(await firstLogprob("int8")).not.toBe(f32);
    expect(await firstLogprob("bf16")).not.toBe(f32);
    expect(await firstLogprob("int8", "bf16")).not.toBe(await firstLogprob("int8"));
  });
});

describe.each(["bf16", "int8"] as const)(
  "stories260K with %s weights and bf16 activations",
  (dtype) => {
    it.runIf(hasNativeQuant)(
      "the native product (AVX-512 BF16 dot products where present) gives the TypeScript reference's greedy tokens, which are the goldens",
      async () => {
        const native = runner(dtype, model.weights, goldenNumBlocks, "native", "bf16");
        expect(native.gemm.name).toBe(`typescript+${dtype}-native-bf16act`);
        await expectReferenceGoldens(
          native,
          runner(dtype, model.weights, goldenNumBlocks, "typescript", "bf16"),
        );
      },
    );

    it("changes the perplexity of the golden texts by under 1% (measured in docs/benchmarks.md)", async () => {
      const label = `${dtype} weights + bf16 activations`;
      const rounded = runner(dtype, model.weights, 64, "typescript", "bf16");
      const [nll, ratio] = await goldenPerplexity(rounded, label);
      const weightsOnly = await goldenNll(runner(dtype), cases, blockSize);
      expect(nll).not.toBe(weightsOnly); // the activations really are rounded
      expect(ratio).toBeLessThan(1.01);
    });
  },
);
