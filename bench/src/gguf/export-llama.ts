import { basename } from "node:path";
import { expectedWeightShapes, type LlamaConfig, loadConfig, loadWeights } from "@kiln/model";
import type { GgmlType, GgufTensorSpec, GgufValue } from "./gguf-writer";
import { writeGguf } from "./gguf-writer";
import { readGgufVocab } from "./vocab";

/**
 * Hugging Face Llama directory → GGUF for llama.cpp's `llama` architecture: F32, or the
 * matrices as F16, BF16 or Q8_0 (norm vectors stay F32, and a matrix whose rows are not a
 * multiple of 32 values F16 under Q8_0, as llama.cpp's converter does).
 *
 * The one non-obvious step: HF stores q_proj/k_proj rows per head as [first halves of all
 * rotary pairs; second halves] (RoPE "rotate_half" / NeoX layout), while llama.cpp's llama
 * architecture rotates adjacent pairs (2i, 2i+1). llama.cpp's converter therefore permutes
 * q/k rows per head; `interleaveRopeRows` is that permutation (the inverse of the
 * permutation HF applied when it converted Meta's checkpoints).
 */

export interface ExportOptions {
  /** Force scores from tokenizer.json even when tokenizer.model exists (tests). */
  readonly ignoreSentencePieceModel?: boolean;
  /** How the matrices are stored (default f32). */
  readonly tensorType?: GgmlType;
}

/** general.file_type (llama_ftype) of a file whose matrices are all `type`. */
const FILE_TYPE: Record<GgmlType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

export interface ExportResult {
  readonly path: string;
  readonly numTensors: number;
  readonly numBytes: number;
  readonly vocabSource: string;
}

/**
 * Reorders rows of a [numHeads * headDim, cols] projection from HF's half-split rotary layout
 * to llama.cpp's interleaved one: within each head, new row 2i+j = old row j*headDim/2 + i.
 * Returns a new array; `w` is not modified.
 */
export function interleaveRopeRows(w: Float32Array, numHeads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const headDim = rows / numHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new Error(`cannot permute ${rows} rows into ${numHeads} heads of even size`);
  }
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < numHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * headDim + j * half + i) * cols;
        const dst = (h * headDim + 2 * i + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** HF tensor name → GGUF name (llama.cpp's LLM_ARCH_LLAMA tensor names). */
export function ggufTensorName(hfName: string): string {
  const fixed: Record<string, string> = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  };
  const direct = fixed[hfName];
  if (direct) return direct;
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hfName);
  const perLayer: Record<string, string> = {
    input_layernorm: "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    post_attention_layernorm: "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  };
  const suffix = m ? perLayer[m[2]!] : undefined;
  if (!m || !suffix) throw new Error(`no GGUF name for tensor ${hfName}`);
  return `blk.${m[1]}.${suffix}.weight`;
}

function checkSupported(config: LlamaConfig): void {
  if (config.architecture !== "LlamaForCausalLM") {
    throw new Error(`only LlamaForCausalLM is exported, not ${config.architecture}`);
  }
  if (config.attentionBias) throw new Error("attention bias is not exported");
  if (config.ropeScaling) throw new Error("rope scaling is not exported");
}

async function metadataFor(
  dir: string,
  config: LlamaConfig,
  opts: ExportOptions,
): Promise<{ metadata: Map<string, GgufValue>; vocabSource: string }> {
  const vocab = await readGgufVocab(dir, config.vocabSize, opts);
  const u32 = (value: number): GgufValue => ({ kind: "u32", value });
  const f32 = (value: number): GgufValue => ({ kind: "f32", value });
  const entries: [string, GgufValue][] = [
    ["general.architecture", { kind: "string", value: "llama" }],
    ["general.name", { kind: "string", value: basename(dir) }],
    ["general.file_type", u32(FILE_TYPE[opts.tensorType ?? "f32"])],
    ["llama.context_length", u32(config.maxPositionEmbeddings)],
    ["llama.embedding_length", u32(config.hiddenSize)],
    ["llama.block_count", u32(config.numLayers)],
    ["llama.feed_forward_length", u32(config.intermediateSize)],
    ["llama.attention.head_count", u32(config.numHeads)],
    ["llama.attention.head_count_kv", u32(config.numKvHeads)],
    ["llama.attention.key_length", u32(config.headDim)],
    ["llama.attention.value_length", u32(config.headDim)],
    ["llama.rope.freq_base", f32(config.ropeTheta)],
    ["llama.rope.dimension_count", u32(config.headDim)],
    ["llama.attention.layer_norm_rms_epsilon", f32(config.rmsNormEps)],
    ["llama.vocab_size", u32(config.vocabSize)],
    ["tokenizer.ggml.model", { kind: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { kind: "string[]", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { kind: "f32[]", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { kind: "i32[]", value: vocab.tokenTypes }],
    ["tokenizer.ggml.add_bos_token", { kind: "bool", value: config.bosTokenId !== null }],
    ["tokenizer.ggml.add_eos_token", { kind: "bool", value: false }],
  ];
  if (config.bosTokenId !== null)
    entries.push(["tokenizer.ggml.bos_token_id", u32(config.bosTokenId)]);
  const eos = config.eosTokenIds[0];
  if (eos !== undefined) entries.push(["tokenizer.ggml.eos_token_id", u32(eos)]);
  const unk = vocab.tokens.indexOf("<unk>");
  if (unk >= 0) entries.push(["tokenizer.ggml.unknown_token_id", u32(unk)]);
  return { metadata: new Map(entries), vocabSource: vocab.source };
}

/**
 * Writes `outPath` from the HF directory `dir`, one tensor in memory at a time. Tied
 * embeddings get no `output.weight`: llama.cpp then reuses `token_embd.weight` for the head.
 * Throws on architectures or features this exporter does not cover.
 */
export async function exportLlamaToGguf(
  dir: string,
  outPath: string,
  opts: ExportOptions = {},
): Promise<ExportResult> {
  const config = await loadConfig(dir);
  checkSupported(config);
  const { metadata, vocabSource } = await metadataFor(dir, config, opts);
  const tensors: GgufTensorSpec[] = [];
  for (const [hfName, shape] of expectedWeightShapes(config)) {
    const load = async () => {
      const weights = await loadWeights(dir, { filter: (n) => n === hfName });
      const data = weights.get(hfName)?.data;
      if (!data) throw new Error(`${dir}: tensor ${hfName} is missing`);
      const cols = shape[1] ?? 1;
      if (hfName.endsWith("q_proj.weight")) return interleaveRopeRows(data, config.numHeads, cols);
      if (hfName.endsWith("k_proj.weight"))
        return interleaveRopeRows(data, config.numKvHeads, cols);
      return data;
    };
    let type = shape.length === 2 ? (opts.tensorType ?? "f32") : "f32";
    // As llama.cpp's converter: a matrix whose rows do not split into Q8_0 blocks stays F16.
    if (type === "q8_0" && shape[1]! % 32 !== 0) type = "f16";
    tensors.push({ name: ggufTensorName(hfName), shape, type, load });
  }
  const numBytes = await writeGguf(outPath, metadata, tensors);
  return { path: outPath, numTensors: tensors.length, numBytes, vocabSource };
}
