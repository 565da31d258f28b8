import { mkdir, open, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { f16BitsToF32, f32ToF16Bits } from "./half";
import {
  AWQ_PACK_ORDER,
  isQuantizable,
  parseQuantizationConfig,
  type QuantizationConfig,
  type QuantMethod,
} from "./quantized";
import { copyTokenizer } from "./random-model";
import { type SafetensorsLayoutEntry, safetensorsHeaderBytes } from "./safetensors";
import { loadModel } from "./weights";

/**
 * Writes GPTQ and AWQ checkpoints (issue 20) from a dense one, following each format's layout
 * (quantized.ts documents it): what the tests and benchmarks load, since no pre-quantized model
 * can be downloaded here. The quantization is round-to-nearest per group (asymmetric, min/max
 * with 0 inside the range, scales rounded to half floats), not GPTQ's or AWQ's error-correcting
 * search: the layout is the format's, the codes are simply the nearest ones.
 */

const PROJECTIONS = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
];

export interface QuantizeCheckpointOptions {
  readonly method: QuantMethod;
  /** GPTQ: 2, 4 or 8; AWQ: 4 (the default). */
  readonly bits?: number;
  /** Inputs per group; null: one group per output column (-1 in config.json). */
  readonly groupSize: number | null;
  /** GPTQ: groups over a seeded permutation of the inputs (desc_act's g_idx). */
  readonly actOrder?: boolean;
  /** GPTQ: "gptq" (v1, zeros stored minus one; the default) or "gptq_v2". */
  readonly checkpointFormat?: "gptq" | "gptq_v2";
  readonly seed?: number;
}

/** Which linear layers were stored quantized and which densely (their shapes do not pack). */
export interface QuantizedCheckpoint {
  readonly quantized: readonly string[];
  readonly dense: readonly string[];
}

interface OutTensor {
  readonly entry: SafetensorsLayoutEntry;
  readonly bytes: Uint8Array;
}

function bytesOf(arr: Float32Array | Int32Array | Uint16Array): Uint8Array {
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

function tensor(
  name: string,
  dtype: string,
  shape: number[],
  data: Float32Array | Int32Array | Uint16Array,
): OutTensor {
  const bytes = bytesOf(data);
  return { entry: { name, dtype, shape, byteLength: bytes.length }, bytes };
}

/** A seeded permutation of 0..n-1 (Fisher–Yates over an xorshift stream). */
function permutation(n: number, seed: number): Int32Array {
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  let s = seed | 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const j = (s >>> 0) % (i + 1);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  return perm;
}

/**
 * One layer's codes, zeros, scales and groups: w is [N, K] (out × in). Returns the tensors of
 * the format, named `${prefix}.qweight` and so on.
 */
function quantizeLayer(
  prefix: string,
  q: QuantizationConfig,
  w: Float32Array,
  outFeatures: number,
  inFeatures: number,
  gIdx: Int32Array,
): OutTensor[] {
  const bits = q.bits;
  const maxq = (1 << bits) - 1;
  const pack = 32 / bits;
  const numGroups = inFeatures / (q.groupSize ?? inFeatures);
  // v1 GPTQ stores zero − 1 in `bits` bits: a zero of 0 cannot be stored, so zeros start at 1.
  const minZero = q.zerosMinusOne ? 1 : 0;
  const scales = new Float32Array(numGroups * outFeatures);
  const zeros = new Int32Array(numGroups * outFeatures);
  for (let g = 0; g < numGroups; g++) {
    for (let n = 0; n < outFeatures; n++) {
      let lo = 0;
      let hi = 0;
      for (let k = 0; k < inFeatures; k++) {
        if (gIdx[k] !== g) continue;
        const v = w[n * inFeatures + k]!;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      // The stored scale is a half float: round it first so codes use the value read back.
      const scale = f16BitsToF32(f32ToF16Bits((hi - lo) / (maxq - minZero) || 1));
      scales[g * outFeatures + n] = scale;
      zeros[g * outFeatures + n] = Math.min(maxq, Math.max(minZero, Math.round(-lo / scale)));
    }
  }
  const codes = new Int32Array(inFeatures * outFeatures); // [K, N]
  for (let k = 0; k < inFeatures; k++) {
    const g = gIdx[k]!;
    for (let n = 0; n < outFeatures; n++) {
      const s = scales[g * outFeatures + n]!;
      const z = zeros[g * outFeatures + n]!;
      const code = Math.round(w[n * inFeatures + k]! / s) + z;
      codes[k * outFeatures + n] = Math.min(maxq, Math.max(0, code));
    }
  }
  const storedZero = (g: number, n: number) =>
    zeros[g * outFeatures + n]! - (q.zerosMinusOne ? 1 : 0);
  const qzeros = new Int32Array(numGroups * (outFeatures / pack));
  for (let g = 0; g < numGroups; g++) {
    for (let n = 0; n < outFeatures; n++) {
      const word = g * (outFeatures / pack) + Math.floor(n / pack);
      const slot = q.method === "awq" ? awqNibbleOf(n % 8) : n % pack;
      qzeros[word]! |= storedZero(g, n) << (bits * slot);
    }
  }
  let qweight: Int32Array;
  if (q.method === "gptq") {
    qweight = new Int32Array((inFeatures / pack) * outFeatures); // [K / p, N]
    for (let k = 0; k < inFeatures; k++) {
      for (let n = 0; n < outFeatures; n++) {
        qweight[Math.floor(k / pack) * outFeatures + n]! |=
          codes[k * outFeatures + n]! << (bits * (k % pack));
      }
    }
  } else {
    qweight = new Int32Array(inFeatures * (outFeatures / 8)); // [K, N / 8]
    for (let k = 0; k < inFeatures; k++) {
      for (let n = 0; n < outFeatures; n++) {
        qweight[k * (outFeatures / 8) + (n >> 3)]! |=
          codes[k * outFeatures + n]! << (4 * awqNibbleOf(n & 7));
      }
    }
  }
  const scaleBits = Uint16Array.from(scales, (s) => f32ToF16Bits(s));
  const out = [
    tensor(
      `${prefix}.qweight`,
      "I32",
      q.method === "gptq" ? [inFeatures / pack, outFeatures] : [inFeatures, outFeatures / pack],
      qweight,
    ),
    tensor(`${prefix}.qzeros`, "I32", [numGroups, outFeatures / pack], qzeros),
    tensor(`${prefix}.scales`, "F16", [numGroups, outFeatures], scaleBits),
  ];
  if (q.method === "gptq") out.push(tensor(`${prefix}.g_idx`, "I32", [inFeatures], gIdx));
  return out;
}

/** The nibble of an AWQ word that holds output column j (0..7). */
function awqNibbleOf(j: number): number {
  return (AWQ_PACK_ORDER as readonly number[]).indexOf(j);
}

function quantizationConfigJson(opts: QuantizeCheckpointOptions, bits: number) {
  const groupSize = opts.groupSize ?? -1;
  if (opts.method === "awq") {
    return { quant_method: "awq", bits, group_size: groupSize, version: "gemm", zero_point: true };
  }
  return {
    quant_method: "gptq",
    bits,
    group_size: groupSize,
    desc_act: opts.actOrder ?? false,
    sym: false,
    checkpoint_format: opts.checkpointFormat ?? "gptq",
  };
}

/**
 * Reads the dense checkpoint in `srcDir` and writes `dstDir`: config.json with
 * `quantization_config`, model.safetensors with every linear layer whose shape packs stored as
 * the format's tensors (the others and the embeddings, norms and lm_head as F32), and the
 * tokenizer and generation files.
 */
export async function writeQuantizedCheckpoint(
  srcDir: string,
  dstDir: string,
  opts: QuantizeCheckpointOptions,
): Promise<QuantizedCheckpoint> {
  const { weights } = await loadModel(srcDir);
  const rawConfig = JSON.parse(await readFile(join(srcDir, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const bits = opts.bits ?? 4;
  const qjson = quantizationConfigJson(opts, bits);
  // Parsed back as the loader will: an unsupported bit width or format fails here.
  const q = parseQuantizationConfig(qjson)!;
  const out: OutTensor[] = [];
  const quantized: string[] = [];
  const dense: string[] = [];
  let layerSeed = opts.seed ?? 1;
  for (const [name, t] of weights) {
    const prefix = name.slice(0, -".weight".length);
    const isLinear = PROJECTIONS.some((p) => prefix.endsWith(p));
    const [outFeatures, inFeatures] = t.shape as [number, number];
    if (!isLinear || !isQuantizable(q, inFeatures, outFeatures)) {
      if (isLinear) dense.push(prefix);
      out.push(tensor(name, "F32", [...t.shape], t.data));
      continue;
    }
    const groupSize = q.groupSize ?? inFeatures;
    const gIdx = new Int32Array(inFeatures);
    const order =
      opts.actOrder === true
        ? permutation(inFeatures, layerSeed++)
        : Int32Array.from(gIdx, (_, i) => i);
    order.forEach((k, i) => {
      gIdx[k] = Math.floor(i / groupSize);
    });
    out.push(...quantizeLayer(prefix, q, t.data, outFeatures, inFeatures, gIdx));
    quantized.push(prefix);
  }
  await mkdir(dstDir, { recursive: true });
  await writeFile(
    join(dstDir, "config.json"),
    `${JSON.stringify({ ...rawConfig, quantization_config: qjson }, null, 2)}\n`,
  );
  await copyTokenizer(srcDir, dstDir);
  for (const file of ["generation_config.json", "tokenizer.model"]) {
    await readFile(join(srcDir, file)).then(
      (bytes) => writeFile(join(dstDir, file), bytes),
      () => {},
    );
  }
  const tmp = join(dstDir, "model.safetensors.tmp");
  const handle = await open(tmp, "w");
  try {
    await handle.write(safetensorsHeaderBytes(out.map((t) => t.entry)));
    for (const t of out) await handle.write(t.bytes);
  } finally {
    await handle.close();
  }
  await rename(tmp, join(dstDir, "model.safetensors"));
  return { quantized, dense };
}
