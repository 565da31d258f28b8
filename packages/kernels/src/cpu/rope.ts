import type { LlamaConfig } from "@kiln/model";

/**
 * Rotary position embedding as Hugging Face Llama applies it ("rotate half"): dimension i of a
 * head pairs with dimension i + headDim/2 and both rotate by the angle position × invFreq[i].
 */

/**
 * [headDim / 2] inverse frequencies, with llama3 or linear scaling applied. Computed in float64
 * once per model; HF computes them in float32, which differs by < 1 ulp of the f32 result.
 */
export function computeInvFreq(
  cfg: Pick<LlamaConfig, "headDim" | "ropeTheta" | "ropeScaling">,
): Float64Array {
  const halfDim = cfg.headDim / 2;
  const invFreq = new Float64Array(halfDim); // [headDim / 2]
  for (let i = 0; i < halfDim; i++) invFreq[i] = 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim);
  const scaling = cfg.ropeScaling;
  if (scaling === null) return invFreq;
  if (scaling.type === "linear") {
    // Linear scaling divides positions by the factor; dividing the frequencies is the same.
    for (let i = 0; i < halfDim; i++) invFreq[i] = invFreq[i]! / scaling.factor;
    return invFreq;
  }
  // llama3: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
  const oldLen = scaling.originalMaxPositionEmbeddings;
  const lowFreqWavelen = oldLen / scaling.lowFreqFactor;
  const highFreqWavelen = oldLen / scaling.highFreqFactor;
  for (let i = 0; i < halfDim; i++) {
    const freq = invFreq[i]!;
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen > lowFreqWavelen) {
      invFreq[i] = freq / scaling.factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth =
        (oldLen / wavelen - scaling.lowFreqFactor) /
        (scaling.highFreqFactor - scaling.lowFreqFactor);
      invFreq[i] = ((1 - smooth) * freq) / scaling.factor + smooth * freq;
    }
  }
  return invFreq;
}

/**
 * Fills cos[t, i] and sin[t, i] (both [numTokens, headDim / 2]) for every token's position.
 * Done once per step and shared by every layer and head.
 */
export function fillRopeTables(
  invFreq: Float64Array,
  positions: Int32Array,
  numTokens: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const halfDim = invFreq.length;
  for (let t = 0; t < numTokens; t++) {
    const pos = positions[t]!;
    const off = t * halfDim;
    for (let i = 0; i < halfDim; i++) {
      const angle = pos * invFreq[i]!;
      cos[off + i] = Math.cos(angle);
      sin[off + i] = Math.sin(angle);
    }
  }
}

/**
 * Rotates `numHeads` heads of every token in place. Head h of token t starts at
 * t × rowStride + colOffset + h × headDim in `buf` (so q and k inside a fused qkv row work).
 */
export function applyRope(
  buf: Float32Array,
  numTokens: number,
  rowStride: number,
  colOffset: number,
  numHeads: number,
  headDim: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const halfDim = headDim / 2;
  for (let t = 0; t < numTokens; t++) {
    const tableOff = t * halfDim;
    for (let h = 0; h < numHeads; h++) {
      const off = t * rowStride + colOffset + h * headDim;
      for (let i = 0; i < halfDim; i++) {
        const c = cos[tableOff + i]!;
        const s = sin[tableOff + i]!;
        const x1 = buf[off + i]!;
        const x2 = buf[off + halfDim + i]!;
        buf[off + i] = x1 * c - x2 * s;
        buf[off + halfDim + i] = x2 * c + x1 * s;
      }
    }
  }
}
