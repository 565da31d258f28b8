import type { LlamaConfig, WeightMap } from "@kiln/model";
import { referenceCausalAttention } from "./dense-attention";

/**
 * A dense float64 Llama forward pass over one whole sequence, read top to bottom like the HF
 * modeling code: no KV cache, no batching, no fused weights, nothing shared with the CPU
 * backend's implementation. Slow (allocates freely); for tests on tiny models only.
 */

function weight(weights: WeightMap, name: string): Float32Array {
  const t = weights.get(name);
  if (t === undefined) throw new Error(`reference: missing weight ${name}`);
  return t.data;
}

/** y[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[o]) for `rows` rows; w is [outLen, inLen]. */
function linear(
  x: Float64Array,
  w: Float32Array,
  rows: number,
  inLen: number,
  outLen: number,
  bias?: Float32Array,
): Float64Array {
  const y = new Float64Array(rows * outLen);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outLen; o++) {
      let s = bias ? bias[o]! : 0;
      for (let i = 0; i < inLen; i++) s += x[r * inLen + i]! * w[o * inLen + i]!;
      y[r * outLen + o] = s;
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, rows: number, dim: number, eps: number) {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i]! * inv * w[i]!;
  }
  return y;
}

/** HF `_compute_default_rope_parameters` plus the linear and llama3 variants. */
export function referenceInvFreq(cfg: LlamaConfig): Float64Array {
  const half = cfg.headDim / 2;
  const out = new Float64Array(half);
  const s = cfg.ropeScaling;
  for (let i = 0; i < half; i++) {
    const base = 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim);
    if (s === null) out[i] = base;
    else if (s.type === "linear") out[i] = base / s.factor;
    else {
      const wavelen = (2 * Math.PI) / base;
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const scaled = wavelen > lowWavelen ? base / s.factor : base;
      const smooth =
        (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
        (s.highFreqFactor - s.lowFreqFactor);
      const isMedium = wavelen >= highWavelen && wavelen <= lowWavelen;
      out[i] = isMedium ? ((1 - smooth) * scaled) / s.factor + smooth * scaled : scaled;
    }
  }
  return out;
}

/** Rotate-half RoPE on `numHeads` heads of each row; row r is at position r. */
function rope(x: Float64Array, rows: number, numHeads: number, cfg: LlamaConfig): void {
  const hd = cfg.headDim;
  const half = hd / 2;
  const invFreq = referenceInvFreq(cfg);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < numHeads; h++) {
      const off = (r * numHeads + h) * hd;
      for (let i = 0; i < half; i++) {
        const a = r * invFreq[i]!;
        const x1 = x[off + i]!;
        const x2 = x[off + half + i]!;
        x[off + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        x[off + half + i] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
    }
  }
}

/**
 * Logits of every position of `tokenIds` (positions 0..n−1): a new [n, vocabSize] array.
 * Weights use HF names; lm_head falls back to embed_tokens when embeddings are tied.
 */
export function referenceForward(
  cfg: LlamaConfig,
  weights: WeightMap,
  tokenIds: readonly number[],
): Float64Array {
  const final = referenceHiddenStates(cfg, weights, tokenIds);
  const embedTokens = weight(weights, "model.embed_tokens.weight");
  const lmHead = cfg.tieWordEmbeddings ? embedTokens : weight(weights, "lm_head.weight");
  return linear(final, lmHead, tokenIds.length, cfg.hiddenSize, cfg.vocabSize);
}

/**
 * The last layer's hidden state of every position after the final norm (what lm_head and
 * embedding pooling read): a new [n, hiddenSize] array.
 */
export function referenceHiddenStates(
  cfg: LlamaConfig,
  weights: WeightMap,
  tokenIds: readonly number[],
): Float64Array {
  const n = tokenIds.length;
  const dim = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const ffn = cfg.intermediateSize;
  const embedTokens = weight(weights, "model.embed_tokens.weight");
  const x = new Float64Array(n * dim); // [n, hiddenSize]
  tokenIds.forEach((id, t) => {
    for (let i = 0; i < dim; i++) x[t * dim + i] = embedTokens[id * dim + i]!;
  });
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    const w = (name: string) => weight(weights, `${p}.${name}`);
    const b = (name: string) => (cfg.attentionBias ? w(name) : undefined);
    const h = rmsNorm(x, w("input_layernorm.weight"), n, dim, cfg.rmsNormEps);
    const q = linear(h, w("self_attn.q_proj.weight"), n, dim, qDim, b("self_attn.q_proj.bias"));
    const k = linear(h, w("self_attn.k_proj.weight"), n, dim, kvDim, b("self_attn.k_proj.bias"));
    const v = linear(h, w("self_attn.v_proj.weight"), n, dim, kvDim, b("self_attn.v_proj.bias"));
    rope(q, n, cfg.numHeads, cfg);
    rope(k, n, cfg.numKvHeads, cfg);
    const attn = referenceCausalAttention(q, k, v, n, n, cfg);
    const o = linear(attn, w("self_attn.o_proj.weight"), n, qDim, dim);
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + o[i]!;
    const h2 = rmsNorm(x, w("post_attention_layernorm.weight"), n, dim, cfg.rmsNormEps);
    const gate = linear(h2, w("mlp.gate_proj.weight"), n, dim, ffn);
    const up = linear(h2, w("mlp.up_proj.weight"), n, dim, ffn);
    for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
    const down = linear(gate, w("mlp.down_proj.weight"), n, ffn, dim);
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + down[i]!;
  }
  return rmsNorm(x, weight(weights, "model.norm.weight"), n, dim, cfg.rmsNormEps);
}
