import { mkdir, open, readFile, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseConfig } from "./config";
import { hasErrnoCode, ModelError } from "./errors";
import { safetensorsHeaderBytes } from "./safetensors";
import { expectedWeightShapes } from "./weights";

/**
 * Random-weight Llama checkpoints at realistic shapes, for benchmarks and tests: throughput
 * does not depend on the weights' values, only on their shapes.
 */

/** The shape of a Llama model; everything else in config.json takes a fixed default. */
export interface ModelShape {
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly intermediateSize: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
}

export type ShapeName = "tiny" | "llama-110m" | "llama-1b-gqa";

/** Named shapes. Vocab 32000 everywhere so the Llama-2 tokenizer fits every one. */
export const SHAPES: Readonly<Record<ShapeName, ModelShape>> = {
  tiny: {
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 128,
    vocabSize: 32000,
    maxPositionEmbeddings: 256,
  },
  "llama-110m": {
    hiddenSize: 768,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 12,
    intermediateSize: 2048,
    vocabSize: 32000,
    maxPositionEmbeddings: 1024,
  },
  "llama-1b-gqa": {
    hiddenSize: 2048,
    numLayers: 16,
    numHeads: 32,
    numKvHeads: 8,
    intermediateSize: 8192,
    vocabSize: 32000,
    maxPositionEmbeddings: 2048,
  },
};

export function isShapeName(name: string): name is ShapeName {
  return Object.hasOwn(SHAPES, name);
}

/** The shared assets directory (`../shared` beside the repository), or env KILN_SHARED_DIR. */
export const SHARED_DIR: string =
  process.env["KILN_SHARED_DIR"] ?? resolve(import.meta.dirname, "../../../../shared");

export const DEFAULT_TOKENIZER_DIR = join(SHARED_DIR, "models/llama2-tokenizer");

const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];
/** Values generated per write: 4 MiB of f32, so memory stays flat for any model size. */
const CHUNK_ELEMS = 1 << 20;

export interface RandomModelOptions {
  /** Same seed and shape → byte-identical model.safetensors. */
  readonly seed: number;
  /**
   * Where tokenizer files are copied from; default `DEFAULT_TOKENIZER_DIR`; null writes none.
   * The directory must hold tokenizer.json (the other two files are optional).
   */
  readonly tokenizerDir?: string | null;
}

function configJson(shape: ModelShape): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: shape.hiddenSize,
    intermediate_size: shape.intermediateSize,
    num_hidden_layers: shape.numLayers,
    num_attention_heads: shape.numHeads,
    num_key_value_heads: shape.numKvHeads,
    vocab_size: shape.vocabSize,
    max_position_embeddings: shape.maxPositionEmbeddings,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: "silu",
    tie_word_embeddings: false,
    attention_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
  };
}

/** A 32-bit mix (the murmur3 finaliser) to derive independent per-tensor seeds. */
function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Fills `out` with uniform values in [-scale, scale) from a mulberry32 stream; returns the
 * next state so a tensor written in chunks equals one written at once.
 */
function fillUniform(out: Float32Array, state: number, scale: number): number {
  let s = state;
  const k = (2 * scale) / 4294967296;
  for (let i = 0; i < out.length; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) * k - scale;
  }
  return s;
}

/** Streams every tensor to `path`; norms are 1, matrices uniform with std ≈ 1/sqrt(3·fan_in). */
async function writeWeights(
  path: string,
  shapes: ReadonlyMap<string, readonly number[]>,
  seed: number,
): Promise<void> {
  const handle = await open(path, "w");
  try {
    await handle.write(
      safetensorsHeaderBytes(
        [...shapes].map(([name, shape]) => ({
          name,
          dtype: "F32",
          shape,
          byteLength: shape.reduce((a, b) => a * b, 1) * 4,
        })),
      ),
    );
    const chunk = new Float32Array(CHUNK_ELEMS); // [CHUNK_ELEMS] f32, reused for every write
    let tensorIndex = 0;
    for (const shape of shapes.values()) {
      const numElems = shape.reduce((a, b) => a * b, 1);
      const isNorm = shape.length === 1;
      // Embedding rows are looked up, not multiplied: give them unit scale.
      const scale = tensorIndex === 0 ? 1 : 1 / Math.sqrt(shape[1] ?? 1);
      let state = mix32(mix32(seed) ^ mix32(tensorIndex + 0x9e3779b9));
      for (let start = 0; start < numElems; start += CHUNK_ELEMS) {
        const part = chunk.subarray(0, Math.min(CHUNK_ELEMS, numElems - start));
        if (isNorm) part.fill(1);
        else state = fillUniform(part, state, scale);
        await handle.write(new Uint8Array(part.buffer, 0, part.byteLength));
      }
      tensorIndex++;
    }
  } finally {
    await handle.close();
  }
}

/** Copies the tokenizer files; tokenizer.json is required, the others optional. */
export async function copyTokenizer(fromDir: string, toDir: string): Promise<void> {
  for (const file of TOKENIZER_FILES) {
    let bytes: Buffer;
    try {
      bytes = await readFile(join(fromDir, file));
    } catch (err) {
      if (!hasErrnoCode(err, "ENOENT")) throw err;
      if (file !== "tokenizer.json") continue;
      throw new ModelError("NOT_FOUND", `no tokenizer.json in ${fromDir}`, { cause: err });
    }
    // read + write rather than copyFile: the shared sources are read-only and copyFile
    // would carry that mode over, making a second run fail to overwrite.
    await writeFile(join(toDir, file), bytes);
  }
}

/**
 * Writes a complete HF model directory (config.json, generation_config.json,
 * model.safetensors in f32, tokenizer files) with seeded random weights. Creates `dir`;
 * overwrites files already there. model.safetensors appears only once fully written.
 */
export async function writeRandomModel(
  dir: string,
  shape: ModelShape | ShapeName,
  opts: RandomModelOptions,
): Promise<void> {
  const resolved = typeof shape === "string" ? SHAPES[shape] : shape;
  const config = configJson(resolved);
  const shapes = expectedWeightShapes(parseConfig(config));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  const generation = { bos_token_id: 1, eos_token_id: 2 };
  await writeFile(join(dir, "generation_config.json"), `${JSON.stringify(generation, null, 2)}\n`);
  const tokenizerDir = opts.tokenizerDir === undefined ? DEFAULT_TOKENIZER_DIR : opts.tokenizerDir;
  if (tokenizerDir !== null) await copyTokenizer(tokenizerDir, dir);
  const partial = join(dir, "model.safetensors.incomplete");
  await writeWeights(partial, shapes, opts.seed);
  await rename(partial, join(dir, "model.safetensors"));
}
