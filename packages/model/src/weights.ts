import { open, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { loadConfig, readJsonFile } from "./config";
import { hasErrnoCode, ModelError } from "./errors";
import { dequantizeLinear, QUANTIZED_SUFFIXES, type QuantizationConfig } from "./quantized";
import { readInt32TensorData, readSafetensorsHeader, readTensorData } from "./safetensors";
import type { LlamaConfig, Tensor, WeightMap } from "./types";

export interface LoadWeightsOptions {
  /** Only tensors whose name passes are read (the others cost nothing but header parsing). */
  readonly filter?: (name: string) => boolean;
  /** I32 tensors (GPTQ/AWQ codes) land here as they are; without it an I32 tensor is an error. */
  readonly ints?: Map<string, Int32Array>;
}

const SINGLE_FILE = "model.safetensors";
const INDEX_FILE = "model.safetensors.index.json";

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (hasErrnoCode(err, "ENOENT")) return false;
    throw err;
  }
}

/** Tensor name → shard file from the index, checked so shards cannot point outside `dir`. */
async function readIndex(dir: string): Promise<Map<string, string>> {
  const indexPath = join(dir, INDEX_FILE);
  const json = await readJsonFile(indexPath, "INVALID_CHECKPOINT");
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new ModelError("INVALID_CHECKPOINT", `${indexPath}: weight_map is missing`);
  }
  const nameToShard = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard === "" || isAbsolute(shard) || shard.includes("..")) {
      throw new ModelError(
        "INVALID_CHECKPOINT",
        `${indexPath}: weight_map entry for ${name} is not a shard file name`,
      );
    }
    nameToShard.set(name, shard);
  }
  return nameToShard;
}

async function loadFile(
  path: string,
  filter: (name: string) => boolean,
  out: Map<string, Tensor>,
  ints: Map<string, Int32Array> | undefined,
): Promise<void> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    const { entries } = await readSafetensorsHeader(handle, size, path);
    for (const entry of entries) {
      if (!filter(entry.name)) continue;
      if (out.has(entry.name) || ints?.has(entry.name)) {
        throw new ModelError(
          "INVALID_CHECKPOINT",
          `${path}: tensor ${entry.name} is in two shards`,
        );
      }
      if (ints !== undefined && entry.dtype === "I32") {
        ints.set(entry.name, await readInt32TensorData(handle, entry, path));
        continue;
      }
      const data = await readTensorData(handle, entry, path);
      out.set(entry.name, { name: entry.name, shape: entry.shape, data });
    }
  } finally {
    await handle.close();
  }
}

/**
 * Reads every tensor of a checkpoint directory as f32: `model.safetensors`, or the shards
 * named by `model.safetensors.index.json`. The caller owns the returned arrays.
 * Throws ModelError: NOT_FOUND without any checkpoint, INVALID_CHECKPOINT for a missing
 * shard, a malformed or truncated file, or an unsupported dtype.
 */
export async function loadWeights(dir: string, opts: LoadWeightsOptions = {}): Promise<WeightMap> {
  const filter = opts.filter ?? (() => true);
  const out = new Map<string, Tensor>();
  if (await fileExists(join(dir, INDEX_FILE))) {
    const nameToShard = await readIndex(dir);
    const shards = [...new Set(nameToShard.values())];
    for (const shard of shards) {
      if (!(await fileExists(join(dir, shard)))) {
        throw new ModelError(
          "INVALID_CHECKPOINT",
          `shard ${shard} listed in ${INDEX_FILE} is missing from ${dir}`,
        );
      }
    }
    for (const shard of shards) await loadFile(join(dir, shard), filter, out, opts.ints);
    for (const [name, shard] of nameToShard) {
      if (filter(name) && !out.has(name) && !opts.ints?.has(name)) {
        throw new ModelError(
          "INVALID_CHECKPOINT",
          `${INDEX_FILE} puts ${name} in ${shard}, which lacks it`,
        );
      }
    }
    return out;
  }
  const single = join(dir, SINGLE_FILE);
  if (!(await fileExists(single))) {
    throw new ModelError("NOT_FOUND", `no ${SINGLE_FILE} or ${INDEX_FILE} in ${dir}`);
  }
  await loadFile(single, filter, out, opts.ints);
  return out;
}

/**
 * Every tensor a Llama-family forward pass reads, with its HF name and shape, in file
 * order (embedding, layers, final norm, lm_head). Pure.
 */
export function expectedWeightShapes(config: LlamaConfig): Map<string, readonly number[]> {
  const hidden = config.hiddenSize;
  const qDim = config.numHeads * config.headDim;
  const kvDim = config.numKvHeads * config.headDim;
  const ffn = config.intermediateSize;
  const shapes = new Map<string, readonly number[]>();
  shapes.set("model.embed_tokens.weight", [config.vocabSize, hidden]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [hidden]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [qDim, hidden]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [kvDim, hidden]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [kvDim, hidden]);
    if (config.attentionBias) {
      shapes.set(`${p}.self_attn.q_proj.bias`, [qDim]);
      shapes.set(`${p}.self_attn.k_proj.bias`, [kvDim]);
      shapes.set(`${p}.self_attn.v_proj.bias`, [kvDim]);
    }
    shapes.set(`${p}.self_attn.o_proj.weight`, [hidden, qDim]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [hidden]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [ffn, hidden]);
    shapes.set(`${p}.mlp.up_proj.weight`, [ffn, hidden]);
    shapes.set(`${p}.mlp.down_proj.weight`, [hidden, ffn]);
  }
  shapes.set("model.norm.weight", [hidden]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [config.vocabSize, hidden]);
  return shapes;
}

/**
 * Checks that every tensor `expectedWeightShapes` names exists with that shape. Extra
 * tensors are allowed. Throws ModelError("INVALID_CHECKPOINT") naming the first problem.
 */
export function validateWeights(config: LlamaConfig, weights: WeightMap): void {
  for (const [name, shape] of expectedWeightShapes(config)) {
    const tensor = weights.get(name);
    if (tensor === undefined) {
      throw new ModelError("INVALID_CHECKPOINT", `missing tensor ${name} [${shape.join(", ")}]`);
    }
    const isSameShape =
      tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
    if (!isSameShape) {
      throw new ModelError(
        "INVALID_CHECKPOINT",
        `tensor ${name} has shape [${tensor.shape.join(", ")}], config.json implies [${shape.join(", ")}]`,
      );
    }
  }
}

/** A validated model: config plus exactly the tensors the forward pass needs. */
export interface LoadedModel {
  readonly config: LlamaConfig;
  readonly weights: WeightMap;
}

/**
 * config.json + weights + `validateWeights`. Only expected tensors are read (a checkpoint's
 * extras, such as rotary caches, are skipped). A GPTQ or AWQ checkpoint's quantized layers are
 * dequantized to f32 (quantized.ts); its other tensors load as usual. Throws ModelError as the
 * three steps do.
 */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const config = await loadConfig(dir);
  const expected = expectedWeightShapes(config);
  const quant = config.quantization ?? null;
  if (quant === null) {
    const weights = await loadWeights(dir, { filter: (name) => expected.has(name) });
    validateWeights(config, weights);
    return { config, weights };
  }
  const ints = new Map<string, Int32Array>();
  const weights = new Map(
    await loadWeights(dir, {
      filter: (name) => expected.has(name) || expected.has(quantizedLayerOf(name) ?? ""),
      ints,
    }),
  );
  dequantizeLayers(quant, expected, weights, ints);
  validateWeights(config, weights);
  return { config, weights };
}

/** `P.weight` for a quantized layer's tensor name `P.qweight` (or qzeros, scales, g_idx). */
function quantizedLayerOf(name: string): string | null {
  const dot = name.lastIndexOf(".");
  const suffix = name.slice(dot + 1);
  return (QUANTIZED_SUFFIXES as readonly string[]).includes(suffix)
    ? `${name.slice(0, dot)}.weight`
    : null;
}

/**
 * Replaces every layer stored as qweight/qzeros/scales(/g_idx) with its dequantized `.weight`
 * in `weights`. A layer stored densely stays as it is (quantizers skip layers whose shape does
 * not pack); a layer with some but not all of its quantized tensors is an error naming it.
 */
function dequantizeLayers(
  quant: QuantizationConfig,
  expected: ReadonlyMap<string, readonly number[]>,
  weights: Map<string, Tensor>,
  ints: Map<string, Int32Array>,
): void {
  for (const [name, shape] of expected) {
    const prefix = name.slice(0, -".weight".length);
    const qweight = ints.get(`${prefix}.qweight`);
    const qzeros = ints.get(`${prefix}.qzeros`);
    const scales = weights.get(`${prefix}.scales`);
    if (qweight === undefined && qzeros === undefined && scales === undefined) continue;
    if (qweight === undefined || qzeros === undefined || scales === undefined) {
      throw new ModelError(
        "INVALID_CHECKPOINT",
        `${prefix} is ${quant.method.toUpperCase()}-quantized but lacks its qweight, qzeros or scales (I32, I32, F16)`,
      );
    }
    if (weights.has(name)) {
      throw new ModelError("INVALID_CHECKPOINT", `${prefix} has both weight and qweight`);
    }
    const [outFeatures, inFeatures] = shape as [number, number];
    const gIdx = ints.get(`${prefix}.g_idx`) ?? null;
    const data = dequantizeLinear(
      prefix,
      quant,
      { qweight, qzeros, scales: scales.data, gIdx },
      inFeatures,
      outFeatures,
    );
    weights.set(name, { name, shape, data });
    weights.delete(`${prefix}.scales`);
  }
}
