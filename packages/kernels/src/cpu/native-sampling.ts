import type { SampledToken, SampleRequest, TokenLogprob } from "../backend";
import { applyLogitProcessors, hasLogitProcessors } from "../sampling/processors";
import { uniform01 } from "../sampling/rng";
import { checkSampleRequest } from "../sampling/sample-row";
import type { SamplingScratch } from "../sampling/scratch";
import { type NativeAddon, tryLoadNativeAddon } from "./native-addon";

/** Samples one row: the contract of `sampleRow(logits, req, scratch)` (sampling/sample-row.ts). */
export type RowSampler = (
  logits: Float32Array,
  req: SampleRequest,
  scratch: SamplingScratch,
) => SampledToken;

/** Which sampler the CPU runner uses: the addon's (default when it loads) or TypeScript's. */
export type CpuSampling = "native" | "typescript";

const NO_TOP_LOGPROBS: readonly TokenLogprob[] = Object.freeze([]);

/**
 * `sampleRow` with its O(vocab) loops (argmax, temperature, top-k/top-p/min-p, log-sum-exp, top
 * logprobs) in native/sampling.cc; validation, logit processors (bias, bans, penalties) and the
 * Philox draw stay in TypeScript. Gives the same token ids as `sampleRow` (the TypeScript path
 * is the reference it is tested against, native-sampling.test.ts) and logprobs within an ulp of
 * log(). Null when the addon is not built.
 */
export function tryNativeRowSampler(): RowSampler | null {
  const addon = tryLoadNativeAddon();
  if (addon === null || typeof addon.sampleRow !== "function") return null;
  return nativeRowSampler(addon);
}

/** The same sampler over another addon's sampleRow (kiln_tier's: ADR 0026). */
export function rowSamplerFrom(sampleRow: NativeAddon["sampleRow"]): RowSampler {
  return nativeRowSampler({ sampleRow });
}

function nativeRowSampler(addon: Pick<NativeAddon, "sampleRow">): RowSampler {
  const params = new Float64Array(6); // [temperature, topK, topP, minP, u, numTop]
  let out = new Float64Array(2);
  return (logits, req, scratch) => {
    checkSampleRequest(req);
    const p = req.params;
    const row = hasLogitProcessors(req) ? applyLogitProcessors(logits, req, scratch) : logits;
    const numTop = Math.min(p.numTopLogprobs, logits.length);
    if (out.length < 2 + 2 * numTop) out = new Float64Array(2 + 2 * numTop);
    params[0] = p.temperature;
    params[1] = p.topK;
    params[2] = p.topP;
    params[3] = p.minP;
    params[4] = p.temperature === 0 ? 0 : uniform01(p.seed, req.outputIndex);
    params[5] = numTop;
    const tokenId = addon.sampleRow(row, logits, params, out);
    if (numTop === 0) return { tokenId, logprob: out[0]!, topLogprobs: NO_TOP_LOGPROBS };
    const topLogprobs: TokenLogprob[] = new Array(out[1]!);
    for (let j = 0; j < topLogprobs.length; j++) {
      topLogprobs[j] = { tokenId: out[2 + 2 * j]!, logprob: out[3 + 2 * j]! };
    }
    return { tokenId, logprob: out[0]!, topLogprobs };
  };
}
