/**
 * The speculative-decoding configuration (KILN_SPECULATIVE_CONFIG / --speculative-config), a JSON
 * object shaped like vLLM's --speculative-config. Parsed once at the edge (the router's start-up)
 * into this camelCase form; a bad value is an Error naming the key.
 */
export type SpeculationConfig = NgramSpeculation | DraftModelSpeculation;

interface CommonSpeculation {
  /** Drafts proposed per step and sequence at most (num_speculative_tokens, 1..16). */
  readonly numSpeculativeTokens: number;
  /**
   * Kiln's load-adaptive policy (docs/adr/0017): speculate only where the step-time model says
   * it pays. Default true; false drafts for every eligible sequence every step.
   */
  readonly isAdaptive: boolean;
}

export interface NgramSpeculation extends CommonSpeculation {
  readonly method: "ngram";
  /** prompt_lookup_min (default 1). */
  readonly promptLookupMin: number;
  /** prompt_lookup_max (default 4). */
  readonly promptLookupMax: number;
}

export interface DraftModelSpeculation extends CommonSpeculation {
  readonly method: "draft_model";
  /** A model directory (or repo) with the same vocabulary as the target. */
  readonly model: string;
}

const MAX_SPECULATIVE_TOKENS = 16;
const KNOWN_KEYS = new Set([
  "method",
  "num_speculative_tokens",
  "prompt_lookup_min",
  "prompt_lookup_max",
  "model",
  "adaptive",
]);

/** Parses the JSON text; null for an empty or absent value (no speculation). Throws on errors. */
export function parseSpeculationConfig(text: string | undefined): SpeculationConfig | null {
  if (text === undefined || text.trim() === "") return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`speculative config: not JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error("speculative config: expected a JSON object");
  }
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KNOWN_KEYS.has(key)) throw new Error(`speculative config: unknown key "${key}"`);
  }
  const numSpeculativeTokens = intKey(
    obj,
    "num_speculative_tokens",
    null,
    1,
    MAX_SPECULATIVE_TOKENS,
  );
  const adaptive = obj.adaptive ?? true;
  if (typeof adaptive !== "boolean") throw new Error('speculative config: "adaptive" is a boolean');
  const common = { numSpeculativeTokens, isAdaptive: adaptive };
  const method = obj.method ?? (obj.model === undefined ? "ngram" : "draft_model");
  if (method === "ngram") {
    const promptLookupMin = intKey(obj, "prompt_lookup_min", 1, 1, 64);
    const promptLookupMax = intKey(obj, "prompt_lookup_max", Math.max(4, promptLookupMin), 1, 64);
    if (promptLookupMax < promptLookupMin) {
      throw new Error("speculative config: prompt_lookup_max is below prompt_lookup_min");
    }
    return { method, ...common, promptLookupMin, promptLookupMax };
  }
  if (method === "draft_model") {
    if (typeof obj.model !== "string" || obj.model === "") {
      throw new Error('speculative config: "model" (a directory) is required for draft_model');
    }
    return { method, ...common, model: obj.model };
  }
  throw new Error(
    `speculative config: unknown method ${JSON.stringify(method)} (ngram, draft_model)`,
  );
}

function intKey(
  obj: Record<string, unknown>,
  key: string,
  fallback: number | null,
  min: number,
  max: number,
): number {
  const value = obj[key] ?? fallback;
  if (value === null) throw new Error(`speculative config: "${key}" is required`);
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`speculative config: "${key}" must be an integer in ${min}..${max}`);
  }
  return value;
}
