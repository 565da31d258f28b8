import { z } from "zod";
import { ModelError } from "./errors";

/**
 * Pre-quantized checkpoints (issue 20): GPTQ and AWQ, the two formats most Hugging Face models
 * are published in. config.json's `quantization_config` names the method; each quantized linear
 * layer `P` stores `P.qweight`, `P.qzeros` and `P.scales` (GPTQ adds `P.g_idx`) instead of
 * `P.weight`. Kiln dequantizes them when it loads the model, to the exact values
 * scale · (q − zero) (a 4-bit code times a half-float scale is exact in f32); the weight dtype
 * setting (`KILN_WEIGHT_DTYPE`) then applies as to any checkpoint (ADR 0024).
 *
 * GPTQ (AutoGPTQ / GPTQModel, `checkpoint_format` "gptq" or "gptq_v2"), `bits` 2, 4 or 8,
 * p = 32 / bits codes per int32, K inputs, N outputs, G groups:
 * - qweight I32 [K / p, N]: the code of (k, n) is bits `bits · (k mod p)` of qweight[k / p, n];
 * - qzeros I32 [G, N / p]: the zero of (g, n) is bits `bits · (n mod p)` of qzeros[g, n / p],
 *   stored minus one in the "gptq" format (v1), as is;
 * - scales F16 [G, N]; g_idx I32 [K], the group of each input (act-order permutes it); without
 *   it, group k / group_size.
 *
 * AWQ (AutoAWQ, `version` "gemm"), 4 bits:
 * - qweight I32 [K, N / 8] and qzeros I32 [G, N / 8], packed along the outputs in AWQ's order:
 *   nibble i of a word holds output column 8·w + [0, 2, 4, 6, 1, 3, 5, 7][i];
 * - scales F16 [G, N]; the group of input k is k / group_size.
 */

export type QuantMethod = "gptq" | "awq";

export interface QuantizationConfig {
  readonly method: QuantMethod;
  readonly bits: number;
  /** Inputs per group; K (one group) when the checkpoint says -1. */
  readonly groupSize: number | null;
  /** GPTQ only: qzeros hold zero − 1 (the v1 "gptq" format) rather than the zero. */
  readonly zerosMinusOne: boolean;
}

/** The tensors of one quantized linear layer, as read (scales converted to f32). */
export interface QuantizedLinear {
  readonly qweight: Int32Array;
  readonly qzeros: Int32Array;
  readonly scales: Float32Array;
  /** GPTQ's per-input group; null: input k is in group k / groupSize. */
  readonly gIdx: Int32Array | null;
}

/** The suffixes a quantized linear layer's tensors carry instead of `.weight`. */
export const QUANTIZED_SUFFIXES = ["qweight", "qzeros", "scales", "g_idx"] as const;

/** Output column held by nibble i of an AWQ word (AutoAWQ's pack order). */
export const AWQ_PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;
/** Nibble holding output column j of an AWQ word (the inverse of AWQ_PACK_ORDER). */
const AWQ_NIBBLE_OF_COLUMN = [0, 4, 1, 5, 2, 6, 3, 7] as const;

const GPTQ_BITS = [2, 4, 8];

const rawSchema = z.looseObject({
  quant_method: z.string(),
  bits: z.number().int().nullish(),
  w_bit: z.number().int().nullish(), // older AutoAWQ configs
  group_size: z.number().int().nullish(),
  q_group_size: z.number().int().nullish(), // older AutoAWQ configs
  checkpoint_format: z.string().nullish(),
  version: z.string().nullish(),
  zero_point: z.boolean().nullish(),
});

function invalid(message: string): ModelError {
  return new ModelError("INVALID_CONFIG", `config.json: quantization_config: ${message}`);
}

/**
 * Parses config.json's `quantization_config` (null when absent). Throws ModelError
 * ("INVALID_CONFIG") naming the field for a method, bit width, format or version Kiln does not
 * load. Pure.
 */
export function parseQuantizationConfig(json: unknown): QuantizationConfig | null {
  if (json === null || json === undefined) return null;
  const parsed = rawSchema.safeParse(json);
  if (!parsed.success) {
    throw invalid(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
  }
  const raw = parsed.data;
  const method = raw.quant_method.toLowerCase();
  const bits = raw.bits ?? raw.w_bit ?? 4;
  const rawGroup = raw.group_size ?? raw.q_group_size ?? 128;
  if (rawGroup !== -1 && rawGroup <= 0) throw invalid(`group_size ${rawGroup} is not positive`);
  const groupSize = rawGroup === -1 ? null : rawGroup;
  if (method === "gptq") {
    if (!GPTQ_BITS.includes(bits)) {
      throw invalid(`GPTQ with bits ${bits} is not supported (${GPTQ_BITS.join(", ")})`);
    }
    const format = raw.checkpoint_format ?? "gptq";
    if (format !== "gptq" && format !== "gptq_v2") {
      throw invalid(`GPTQ checkpoint_format "${format}" is not supported (gptq, gptq_v2)`);
    }
    return { method, bits, groupSize, zerosMinusOne: format === "gptq" };
  }
  if (method === "awq") {
    if (bits !== 4) throw invalid(`AWQ with bits ${bits} is not supported (4)`);
    const version = (raw.version ?? "gemm").toLowerCase();
    if (version !== "gemm") {
      throw invalid(`AWQ version "${raw.version}" is not supported (gemm)`);
    }
    if (raw.zero_point === false) throw invalid("AWQ without zero_point is not supported");
    return { method, bits, groupSize, zerosMinusOne: false };
  }
  throw invalid(`quant_method "${raw.quant_method}" is not supported (gptq, awq)`);
}

/** Tensor shapes of one quantized linear layer with K inputs and N outputs. */
export function quantizedShapes(
  q: QuantizationConfig,
  inFeatures: number,
  outFeatures: number,
): { qweight: number[]; qzeros: number[]; scales: number[]; gIdx: number[] | null } {
  const pack = 32 / q.bits;
  const numGroups = inFeatures / (q.groupSize ?? inFeatures);
  if (q.method === "gptq") {
    return {
      qweight: [inFeatures / pack, outFeatures],
      qzeros: [numGroups, outFeatures / pack],
      scales: [numGroups, outFeatures],
      gIdx: [inFeatures],
    };
  }
  return {
    qweight: [inFeatures, outFeatures / pack],
    qzeros: [numGroups, outFeatures / pack],
    scales: [numGroups, outFeatures],
    gIdx: null,
  };
}

/**
 * Whether a layer of K inputs and N outputs can be stored in this format: whole words along the
 * packed dimensions and whole groups along K.
 */
export function isQuantizable(q: QuantizationConfig, inFeatures: number, outFeatures: number) {
  const pack = 32 / q.bits;
  const groupSize = q.groupSize ?? inFeatures;
  // Both formats pack zeros (AWQ also codes) along the outputs; GPTQ packs codes along the inputs.
  const inputsPack = q.method !== "gptq" || inFeatures % pack === 0;
  return inputsPack && outFeatures % pack === 0 && inFeatures % groupSize === 0;
}

/**
 * The layer's weight as f32 in Hugging Face's Linear layout, [N, K] (out × in):
 * w[n, k] = scales[g, n] · (q[k, n] − zero[g, n]), g the group of input k. Throws ModelError
 * ("INVALID_CHECKPOINT") naming `name` when a tensor's length or a g_idx entry does not fit.
 */
export function dequantizeLinear(
  name: string,
  q: QuantizationConfig,
  t: QuantizedLinear,
  inFeatures: number,
  outFeatures: number,
): Float32Array {
  const shapes = quantizedShapes(q, inFeatures, outFeatures);
  const numGroups = shapes.scales[0]!;
  const need = (what: string, arr: { length: number }, shape: number[]) => {
    const len = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(len) || arr.length !== len) {
      throw new ModelError(
        "INVALID_CHECKPOINT",
        `${name}.${what} has ${arr.length} elements, ${q.method.toUpperCase()} with ${inFeatures} inputs and ${outFeatures} outputs needs [${shape.join(", ")}]`,
      );
    }
  };
  if (!isQuantizable(q, inFeatures, outFeatures)) {
    throw new ModelError(
      "INVALID_CHECKPOINT",
      `${name}: ${inFeatures} inputs × ${outFeatures} outputs cannot be ${q.method.toUpperCase()} ${q.bits}-bit with group size ${q.groupSize ?? "-1"}`,
    );
  }
  need("qweight", t.qweight, shapes.qweight);
  need("qzeros", t.qzeros, shapes.qzeros);
  need("scales", t.scales, shapes.scales);
  if (t.gIdx !== null) need("g_idx", t.gIdx, [inFeatures]);
  const groupSize = q.groupSize ?? inFeatures;
  const groupOf = (k: number): number => {
    if (t.gIdx === null) return Math.floor(k / groupSize);
    const g = t.gIdx[k]!;
    if (g < 0 || g >= numGroups) {
      throw new ModelError(
        "INVALID_CHECKPOINT",
        `${name}.g_idx[${k}] = ${g} is outside the ${numGroups} groups`,
      );
    }
    return g;
  };
  const bits = q.bits;
  const pack = 32 / bits;
  const mask = (1 << bits) - 1;
  const zeroOffset = q.zerosMinusOne ? 1 : 0;
  const wordsPerRow = outFeatures / pack; // qzeros (both) and AWQ's qweight
  const zeroOf = (g: number, n: number): number => {
    const word = t.qzeros[g * wordsPerRow + Math.floor(n / pack)]!;
    const nibble = q.method === "awq" ? AWQ_NIBBLE_OF_COLUMN[n % 8]! : n % pack;
    return ((word >>> (bits * nibble)) & mask) + zeroOffset;
  };
  const out = new Float32Array(outFeatures * inFeatures); // [N, K]
  // Zeros of the group in use, per output column, refreshed when the group changes.
  const zeros = new Float32Array(outFeatures);
  let zerosGroup = -1;
  for (let k = 0; k < inFeatures; k++) {
    const g = groupOf(k);
    if (g !== zerosGroup) {
      for (let n = 0; n < outFeatures; n++) zeros[n] = zeroOf(g, n);
      zerosGroup = g;
    }
    const scaleRow = g * outFeatures;
    for (let n = 0; n < outFeatures; n++) {
      let code: number;
      if (q.method === "gptq") {
        const word = t.qweight[Math.floor(k / pack) * outFeatures + n]!;
        code = (word >>> (bits * (k % pack))) & mask;
      } else {
        const word = t.qweight[k * wordsPerRow + (n >> 3)]!;
        code = (word >>> (4 * AWQ_NIBBLE_OF_COLUMN[n & 7]!)) & 15;
      }
      out[n * inFeatures + k] = t.scales[scaleRow + n]! * (code - zeros[n]!);
    }
  }
  return out;
}
