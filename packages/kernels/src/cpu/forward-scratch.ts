import type { LlamaConfig } from "@kiln/model";

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * Activation buffers of the forward pass, sized for `tokenCapacity` tokens and
 * `sampleCapacity` sampled rows. They grow (to the next power of two) when a step needs more
 * and never shrink, so steady-state steps allocate nothing. Views beyond a step's rows hold
 * stale data and are never read.
 */
export class ForwardScratch {
  private readonly cfg: LlamaConfig;
  tokenCapacity = 0;
  sampleCapacity = 0;
  /** [tokens, hiddenSize] the residual stream. */
  x = new Float32Array(0);
  /** [tokens, hiddenSize] normalised activations (input of a projection). */
  xn = new Float32Array(0);
  /** [tokens, qDim + 2 × kvDim] fused q/k/v projections. */
  qkv = new Float32Array(0);
  /** [tokens, qDim] attention output, input of o_proj. */
  attn = new Float32Array(0);
  /** [tokens, 2 × intermediateSize] fused gate/up projections. */
  gateUp = new Float32Array(0);
  /** [tokens, intermediateSize] silu(gate) × up, input of down_proj. */
  act = new Float32Array(0);
  /** [tokens, headDim / 2] RoPE cosines of each token's position. */
  ropeCos = new Float32Array(0);
  /** [tokens, headDim / 2] RoPE sines of each token's position. */
  ropeSin = new Float32Array(0);
  /** [samples, hiddenSize] final-normed hidden state of each sampled row. */
  sampledHidden = new Float32Array(0);
  /** [samples, vocabSize] logits of each sampled row. */
  logits = new Float32Array(0);

  constructor(cfg: LlamaConfig) {
    this.cfg = cfg;
  }

  ensureTokens(numTokens: number): void {
    if (numTokens <= this.tokenCapacity) return;
    const n = nextPowerOfTwo(numTokens);
    const { hiddenSize, numHeads, numKvHeads, headDim, intermediateSize } = this.cfg;
    const qDim = numHeads * headDim;
    this.x = new Float32Array(n * hiddenSize);
    this.xn = new Float32Array(n * hiddenSize);
    this.qkv = new Float32Array(n * (qDim + 2 * numKvHeads * headDim));
    this.attn = new Float32Array(n * qDim);
    this.gateUp = new Float32Array(n * 2 * intermediateSize);
    this.act = new Float32Array(n * intermediateSize);
    this.ropeCos = new Float32Array((n * headDim) / 2);
    this.ropeSin = new Float32Array((n * headDim) / 2);
    this.tokenCapacity = n;
  }

  ensureSamples(numSamples: number): void {
    if (numSamples <= this.sampleCapacity) return;
    const n = nextPowerOfTwo(numSamples);
    this.sampledHidden = new Float32Array(n * this.cfg.hiddenSize);
    this.logits = new Float32Array(n * this.cfg.vocabSize);
    this.sampleCapacity = n;
  }
}
