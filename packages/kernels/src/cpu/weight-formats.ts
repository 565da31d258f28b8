export { f32ToF16Bits } from "@kiln/model";
/**
 * Weight formats for the projections (KILN_WEIGHT_DTYPE, ADR 0020): pure conversions, no I/O.
 *
 * - "f32": the checkpoint's values as f32 (what every other dtype is converted to at load).
 * - "bf16": each value rounded to the nearest bfloat16 (ties to even); 2 bytes a weight.
 * - "int8": weight-only, like GGML's Q8_0: each row of W [N, K] is cut into groups of
 *   INT8_GROUP_SIZE consecutive inputs (the last group of a row may be shorter); a group stores
 *   one f32 scale d = max|w| / 127 and int8 values q = round(w / d), so w ≈ d · q. About
 *   1.125 bytes a weight. Activations stay f32.
 */

export type WeightDtype = "f32" | "bf16" | "int8";

export const WEIGHT_DTYPES: readonly WeightDtype[] = ["f32", "bf16", "int8"];

/**
 * What the activations of a bf16 or int8 projection are multiplied as (KILN_ACTIVATION_DTYPE):
 * "f32", or "bf16" (rounded to nearest, ties to even, then AVX-512 BF16 dot products where the
 * CPU has them: twice the multiply-adds per instruction). f32 weights keep f32 activations.
 */
export type ActivationDtype = "f32" | "bf16";

export const ACTIVATION_DTYPES: readonly ActivationDtype[] = ["f32", "bf16"];

/**
 * Parses a KILN_ACTIVATION_DTYPE / --activation-dtype value: "f32", "bf16", or "auto" (the
 * default): bf16 for bf16 and int8 weights (whoever picks a compact format has traded exactness
 * for speed; the golden tokens stay exact either way), f32 for f32 weights. Throws Error naming
 * the choices.
 */
export function parseActivationDtype(value: string, weights: WeightDtype): ActivationDtype {
  if (value === "auto") return weights === "f32" ? "f32" : "bf16";
  if ((ACTIVATION_DTYPES as readonly string[]).includes(value)) return value as ActivationDtype;
  throw new Error(
    `bad activation dtype "${value}": expected one of auto, ${ACTIVATION_DTYPES.join(", ")}`,
  );
}

/** Inputs (along K) sharing one int8 scale, as in GGML's Q8_0 blocks. */
export const INT8_GROUP_SIZE = 32;

/** Parses a KILN_WEIGHT_DTYPE / --weight-dtype value; throws Error naming the choices. */
export function parseWeightDtype(value: string): WeightDtype {
  if ((WEIGHT_DTYPES as readonly string[]).includes(value)) return value as WeightDtype;
  throw new Error(`bad weight dtype "${value}": expected one of ${WEIGHT_DTYPES.join(", ")}`);
}

/** W [N, K] in int8 groups (see the module comment). */
export interface Int8Matrix {
  readonly n: number;
  readonly k: number;
  /** [N, K] */
  readonly q: Int8Array;
  /** [N, groupsPerRow]: one scale per group. */
  readonly scales: Float32Array;
  readonly groupsPerRow: number;
}

/** Quantizes w [N, K] per row and per group of INT8_GROUP_SIZE along K. */
export function quantizeInt8(w: Float32Array, n: number, k: number): Int8Matrix {
  if (w.length < n * k) throw new RangeError("w is shorter than its shape");
  const groupsPerRow = Math.ceil(k / INT8_GROUP_SIZE);
  const q = new Int8Array(n * k);
  const scales = new Float32Array(n * groupsPerRow);
  for (let row = 0; row < n; row++) {
    for (let g = 0; g < groupsPerRow; g++) {
      const start = row * k + g * INT8_GROUP_SIZE;
      const end = Math.min(start + INT8_GROUP_SIZE, (row + 1) * k);
      let maxAbs = 0;
      for (let i = start; i < end; i++) maxAbs = Math.max(maxAbs, Math.abs(w[i]!));
      const d = Math.fround(maxAbs / 127);
      scales[row * groupsPerRow + g] = d;
      const inv = d === 0 ? 0 : 1 / d;
      for (let i = start; i < end; i++) q[i] = Math.round(w[i]! * inv);
    }
  }
  return { n, k, q, scales, groupsPerRow };
}

/** The f32 matrix an Int8Matrix stands for: w[i] = scale · q[i]. The reference quantization. */
export function dequantizeInt8(m: Int8Matrix): Float32Array {
  const out = new Float32Array(m.n * m.k);
  for (let row = 0; row < m.n; row++) {
    for (let col = 0; col < m.k; col++) {
      const d = m.scales[row * m.groupsPerRow + Math.floor(col / INT8_GROUP_SIZE)]!;
      out[row * m.k + col] = d * m.q[row * m.k + col]!;
    }
  }
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The bfloat16 bits of x, rounded to nearest, ties to even; NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0]!;
  if (Number.isNaN(x)) return ((bits >>> 16) | 0x40) & 0xffff;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Every value of w as bfloat16 bits. */
export function toBf16(w: Float32Array): Uint16Array {
  const out = new Uint16Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = f32ToBf16Bits(w[i]!);
  return out;
}

/** bfloat16 bits back to f32 (exact). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i]! << 16;
  return out;
}

/**
 * w as the weights of `dtype` stand for it, in f32: the reference a quantized forward pass is
 * compared with (an f32 forward pass over these weights applies the same quantization).
 */
export function roundTripWeights(
  w: Float32Array,
  n: number,
  k: number,
  dtype: WeightDtype,
): Float32Array {
  if (dtype === "f32") return w;
  if (dtype === "bf16") return bf16ToF32(toBf16(w.subarray(0, n * k)));
  return dequantizeInt8(quantizeInt8(w, n, k));
}
