import type { Gemm, PackedWeights } from "./gemm";
import { tryLoadNativeAddon } from "./native-addon";
import {
  type ActivationDtype,
  bf16ToF32,
  INT8_GROUP_SIZE,
  type Int8Matrix,
  quantizeInt8,
  toBf16,
  type WeightDtype,
} from "./weight-formats";

/** Projection weights stored as bfloat16 bits. */
class Bf16Weights implements PackedWeights {
  readonly kind: string;
  readonly numBytes: number;
  constructor(
    readonly bits: Uint16Array,
    readonly n: number,
    readonly k: number,
  ) {
    this.kind = "bf16";
    this.numBytes = bits.byteLength;
  }
}

/** Projection weights stored as int8 groups with f32 scales (weight-formats.ts). */
class Int8Weights implements PackedWeights {
  readonly kind = "int8";
  readonly numBytes: number;
  readonly n: number;
  readonly k: number;
  constructor(readonly m: Int8Matrix) {
    this.n = m.n;
    this.k = m.k;
    this.numBytes = m.q.byteLength + m.scales.byteLength;
  }
}

/**
 * Weights in the native product's panel layout (quant-matmul.cc's packQuant): int8 codes with
 * their scales, or bf16 bits with scales null. Opaque outside the addon.
 */
class PanelWeights implements PackedWeights {
  readonly numBytes: number;
  constructor(
    readonly kind: string,
    readonly w: Int8Array | Uint16Array,
    readonly scales: Float32Array | null,
    readonly n: number,
    readonly k: number,
  ) {
    this.numBytes = w.byteLength + (scales?.byteLength ?? 0);
  }
}

/** Writes row `row` of packed bf16 weights into `dst` (f32, exact). */
function decodeBf16Row(w: Bf16Weights, row: number, dst32: Uint32Array): void {
  const off = row * w.k;
  for (let i = 0; i < w.k; i++) dst32[i] = w.bits[off + i]! << 16;
}

/** Writes row `row` of int8 weights into `dst` as scale · q (the dequantized row). */
function decodeInt8Row(w: Int8Matrix, row: number, dst: Float32Array): void {
  const off = row * w.k;
  const sOff = row * w.groupsPerRow;
  for (let g = 0; g < w.groupsPerRow; g++) {
    const d = w.scales[sOff + g]!;
    const start = g * INT8_GROUP_SIZE;
    const end = Math.min(start + INT8_GROUP_SIZE, w.k);
    for (let i = start; i < end; i++) dst[i] = d * w.q[off + i]!;
  }
}

/**
 * out[i, j] (+)= a[i, :] · row for every i < m: the same four-accumulator order as
 * typescriptGemm, so a product over decoded weights is bit-identical to typescriptGemm over the
 * dequantized matrix (the reference the tests compare with).
 */
function dotColumn(
  a: Float32Array,
  row: Float32Array,
  out: Float32Array,
  m: number,
  n: number,
  k: number,
  j: number,
  accumulate: boolean,
): void {
  for (let i = 0; i < m; i++) {
    const aOff = i * k;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let p = 0;
    for (; p + 3 < k; p += 4) {
      s0 += a[aOff + p]! * row[p]!;
      s1 += a[aOff + p + 1]! * row[p + 1]!;
      s2 += a[aOff + p + 2]! * row[p + 2]!;
      s3 += a[aOff + p + 3]! * row[p + 3]!;
    }
    for (; p < k; p++) s0 += a[aOff + p]! * row[p]!;
    const s = s0 + s1 + s2 + s3;
    const o = i * n + j;
    out[o] = accumulate ? out[o]! + s : s;
  }
}

/** How quantizedGemm multiplies. */
export interface QuantizedGemmOptions {
  /**
   * "native": the addon's matmulQuant over weights repacked by its packQuant (quant-matmul.cc:
   * register tiles of up to 6 rows × 32 columns, AVX-512 where present); "typescript": the
   * reference below, which decodes each weight row once per call and is bit-identical to
   * typescriptGemm over the dequantized weights (and the rounded activations). Default: native
   * when the addon has it.
   */
  readonly product?: "native" | "typescript";
  /** The native product's OpenMP team (0, the default, keeps the calling thread's). */
  readonly numThreads?: number;
  /**
   * "bf16": activations are rounded to bfloat16 before the product (ties to even), and the
   * native product uses AVX-512 BF16 pair dot products where the CPU has them. Default "f32".
   */
  readonly activations?: ActivationDtype;
}

/**
 * A Gemm whose packWeights stores projections as `dtype` (bf16 or int8, weight-only) and whose
 * matmulPacked multiplies activations by them, reading the weights from memory in their
 * compact form. matmulTransB (attention, LoRA) and weights packed by `base` go to `base`
 * unchanged.
 */
export function quantizedGemm(
  base: Gemm,
  dtype: Exclude<WeightDtype, "f32">,
  opts: QuantizedGemmOptions = {},
): Gemm {
  const { product, numThreads = 0, activations = "f32" } = opts;
  const addon = product === "typescript" ? null : tryLoadNativeAddon();
  const native =
    addon?.matmulQuant !== undefined && addon.packQuant !== undefined
      ? { matmulQuant: addon.matmulQuant.bind(addon), packQuant: addon.packQuant.bind(addon) }
      : null;
  if (product === "native" && native === null) {
    throw new Error("native quantized product requested but the addon lacks matmulQuant");
  }
  const bf16Activations = activations === "bf16";
  let scratch = new Float32Array(0);
  const rowScratch = (k: number): Float32Array => {
    if (scratch.length < k) scratch = new Float32Array(k);
    return scratch;
  };
  const suffix = `${native === null ? "" : "-native"}${bf16Activations ? "-bf16act" : ""}`;
  return {
    name: `${base.name}+${dtype}${suffix}`,
    matmulTransB: (a, w, out, m, n, k, accumulate) =>
      base.matmulTransB(a, w, out, m, n, k, accumulate),
    packWeights(w, n, k) {
      if (w.length < n * k) throw new RangeError("w is shorter than its shape");
      const view = w.subarray(0, n * k);
      if (native !== null) {
        const rows =
          dtype === "bf16" ? { q: toBf16(view), scales: null } : quantizeInt8(view, n, k);
        const panels = native.packQuant(rows.q, rows.scales, n, k);
        return new PanelWeights(dtype, panels.w, panels.scales, n, k);
      }
      return dtype === "bf16"
        ? new Bf16Weights(toBf16(view), n, k)
        : new Int8Weights(quantizeInt8(view, n, k));
    },
    matmulPacked(a, packed, out, m, accumulate = false) {
      const isQuantized =
        packed instanceof PanelWeights ||
        packed instanceof Bf16Weights ||
        packed instanceof Int8Weights;
      if (!isQuantized) {
        base.matmulPacked(a, packed, out, m, accumulate);
        return;
      }
      const { n, k } = packed;
      if (a.length < m * k || out.length < m * n) {
        throw new RangeError("a or out is shorter than its shape");
      }
      if (packed instanceof PanelWeights) {
        if (native === null) throw new Error("panel weights need the native addon");
        const { w, scales } = packed;
        native.matmulQuant(a, w, scales, out, m, n, k, accumulate, numThreads, bf16Activations);
        return;
      }
      const rows = bf16Activations ? bf16ToF32(toBf16(a.subarray(0, m * k))) : a;
      const row = rowScratch(k);
      const row32 = new Uint32Array(row.buffer, row.byteOffset, k);
      for (let j = 0; j < n; j++) {
        if (packed instanceof Bf16Weights) decodeBf16Row(packed, j, row32);
        else decodeInt8Row(packed.m, j, row);
        dotColumn(rows, row, out, m, n, k, j, accumulate);
      }
    },
  };
}

/** `base` for f32 weights (activations stay f32), else quantizedGemm(base, dtype, opts). */
export function gemmForWeightDtype(
  base: Gemm,
  dtype: WeightDtype,
  opts: Omit<QuantizedGemmOptions, "product"> = {},
): Gemm {
  return dtype === "f32" ? base : quantizedGemm(base, dtype, opts);
}
