import type { SampleRequest } from "../backend";
import { hasLogitProcessors } from "../sampling/processors";

/** The fields a SampleRequest had when this predicate was written; any other one goes to the host. */
const KNOWN_FIELDS = new Set([
  "params",
  "outputIndex",
  "promptTokenIds",
  "outputTokenIds",
  "bannedTokenIds",
]);

/**
 * True when the GPU's greedy kernel gives exactly what the shared sampler would: temperature 0,
 * no logit processors, no top logprobs, and nothing newer in the request (a grammar mask, say)
 * that the kernel does not know. Every other row is read back and sampled by `sampleRow`, which
 * is what keeps seeded sampling identical across backends (ADR 0019).
 */
export function isGpuGreedy(req: SampleRequest): boolean {
  const p = req.params;
  if (p.temperature !== 0 || p.numTopLogprobs !== 0 || hasLogitProcessors(req)) return false;
  if (!Number.isInteger(req.outputIndex) || req.outputIndex < 0) return false;
  for (const [key, value] of Object.entries(req)) {
    if (!KNOWN_FIELDS.has(key) && value !== undefined) return false;
  }
  return true;
}
