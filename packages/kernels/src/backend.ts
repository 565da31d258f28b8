/**
 * The compute backend contract (ADR 0003). A backend owns the model weights and the KV block
 * pool (device-resident on a GPU) and runs one engine step at a time. It keeps no per-sequence
 * state besides the KV memory behind block ids: the caller (the worker service) sends, every
 * step, the full block table of each scheduled sequence. Who owns which block id is decided by
 * the router; the backend trusts the tables it is given.
 */

/** Sampling parameters of one sequence. Defaults (see `DEFAULT_SAMPLING`) disable each knob. */
export interface SamplingParams {
  /** 0 means greedy (argmax; ties go to the lowest token id). */
  readonly temperature: number;
  /** Keep the k most likely tokens; 0 disables. */
  readonly topK: number;
  /** Keep the smallest set whose probability reaches p; 1 disables. */
  readonly topP: number;
  /** Drop tokens whose probability is below minP × the top probability; 0 disables. */
  readonly minP: number;
  /** vLLM semantics: divides positive / multiplies negative logits of tokens seen in prompt or output; 1 disables. */
  readonly repetitionPenalty: number;
  /** OpenAI semantics, over generated tokens only; 0 disables. */
  readonly presencePenalty: number;
  /** OpenAI semantics, over generated tokens only; 0 disables. */
  readonly frequencyPenalty: number;
  /** Added to the raw logits before anything else; token id → bias. */
  readonly logitBias: ReadonlyMap<number, number> | null;
  /** Seed of this sequence's RNG stream (an unsigned 32-bit integer). */
  readonly seed: number;
  /** How many top logprobs to return besides the sampled token's (0 = only the sampled one). */
  readonly numTopLogprobs: number;
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: null,
  seed: 0,
  numTopLogprobs: 0,
};

/** What to sample for one sequence whose last scheduled token produces a next-token distribution. */
export interface SampleRequest {
  readonly params: SamplingParams;
  /**
   * Index among the sequence's generated tokens of the token being sampled (0 for the first).
   * Together with `params.seed` it keys a counter-based RNG, so a seeded sequence samples the
   * same tokens whatever else is in the batch and across preemption.
   */
  readonly outputIndex: number;
  /** Prompt token ids; read only when `repetitionPenalty` ≠ 1. */
  readonly promptTokenIds: ArrayLike<number>;
  /** Generated token ids so far; read only when a penalty is set. */
  readonly outputTokenIds: ArrayLike<number>;
  /** Ids that must not be sampled (stop ids while `min_tokens` is not reached). */
  readonly bannedTokenIds?: ArrayLike<number>;
  /**
   * Speculative decoding (ADR 0017): k draft tokens, the last k tokens of the sequence's query.
   * The backend computes logits at the last k + 1 query positions and verifies the drafts
   * (sampling/verify-drafts.ts); `StepOutput.verified` gets the 1 … k + 1 emitted tokens.
   * Absent or empty: plain sampling of one token.
   */
  readonly draftTokenIds?: ArrayLike<number>;
  /**
   * Structured output (ADR 0016): [ceil(vocabSize / 32)] words, bit `id & 31` of word `id >> 5`
   * set when token `id` is allowed. Applied with the banned ids, before penalties and
   * temperature, top-k and top-p; absent: every token is allowed.
   */
  readonly allowedTokenBitmask?: Int32Array;
}

/**
 * One engine step, flattened without padding: sequence i contributes `queryLens[i]` tokens
 * (a prefill chunk, or 1 for a decode) at positions `contextLens[i] - queryLens[i]` ..
 * `contextLens[i] - 1`. Prefill chunks and decodes of different sequences mix freely.
 */
export interface StepInput {
  /** [numTokens] token ids, sequence after sequence. */
  readonly tokenIds: Int32Array;
  /** [numTokens] absolute position of each token (its RoPE position). */
  readonly positions: Int32Array;
  /** [numSeqs] scheduled tokens per sequence. */
  readonly queryLens: Int32Array;
  /** [numSeqs] tokens in the KV cache once this step has run (cached prefix + this query). */
  readonly contextLens: Int32Array;
  /** [numSeqs + 1] offsets into `blockTables`; sequence i owns blockTables[off[i]..off[i+1]). */
  readonly blockTableOffsets: Int32Array;
  /** Concatenated block tables: block ids covering positions 0..contextLen-1 of each sequence. */
  readonly blockTables: Int32Array;
  /** [numTokens] KV slot (blockId × blockSize + offset) that receives each token's K and V. */
  readonly slotMapping: Int32Array;
  /** [numCopies × 2] (src, dst) block pairs copied before the forward pass (copy-on-write). */
  readonly blockCopies: Int32Array;
  /** [numSeqs] what to sample from the sequence's last token, or null (e.g. a mid-prompt chunk). */
  readonly samples: readonly (SampleRequest | null)[];
  /**
   * Tensor-parallel ranks > 0 (whose samples are all null): [numSeqs] the logit rows rank 0
   * samples for each sequence (0, 1, or 1 + drafts), so every rank computes its vocabulary
   * slice of the same rows (ADR 0018). Absent elsewhere.
   */
  readonly logitRows?: Int32Array;
  /**
   * Structured output with masks computed during the forward pass (ADR 0016; only for a backend
   * whose info has `acceptsDeferredMasks`): a one-element Int32Array on a SharedArrayBuffer. The
   * samples' `allowedTokenBitmask` arrays are shared too and still being filled by the caller,
   * which then stores 1 (filled) or 2 (failed) and notifies; the backend waits for it before it
   * samples, and fails the step on 2. Absent: the masks are complete already.
   */
  readonly masksReady?: Int32Array;
  /** Tests only: also return the logits of every sampled row. */
  readonly returnLogits?: boolean;
  /**
   * [numSeqs] per sequence, what to pool of its final hidden states (after the final norm):
   * "last" the last query token's, "sum" the sum over its query tokens (a caller averaging over
   * a chunked prompt adds the chunks' sums). Absent or null: nothing.
   */
  readonly pooling?: readonly (PoolingKind | null)[];
  /**
   * [numSeqs] with "sum": the offset in the sequence's query where the sum starts (tokens
   * before it were pooled already, e.g. recomputed after a preemption). Absent: 0.
   */
  readonly poolingFrom?: readonly number[];
  /** [numSeqs] LoRA slot of each sequence, -1 for the base model; absent: every one is base. */
  readonly loraSlots?: Int32Array;
  /**
   * Adapters to place in slots before this step runs (ADR 0015): the backend reads each
   * directory (or takes it from its CPU-side cache) and swaps it into the slot.
   */
  readonly loraLoads?: readonly LoraSlotLoad[];
  /**
   * Multi-step decode on the backend's thread (ADR 0028; only for a backend whose info has
   * `runsDecodeSteps`, and an input of decodes only: one query token and a sample per sequence,
   * no drafts, pooling or grammar masks). After this step the backend runs each sequence's
   * further steps, each input the token the step before sampled, and answers them in
   * `StepOutput.runs`. Absent: one step.
   */
  readonly decodeSteps?: DecodeSteps;
}

/** Per sequence, how many decode steps to run and when to stop early (StepInput.decodeSteps). */
export interface DecodeSteps {
  /** [numSeqs] steps, the first included (≥ 1). */
  readonly numSteps: Int32Array;
  /** [numSeqs] ids after which the sequence runs no further step (its EOS and stop ids). */
  readonly stopTokenIds: readonly (readonly number[])[];
}

/** Put the PEFT adapter at `path` (a local directory) into LoRA slot `slot`. */
export interface LoraSlotLoad {
  readonly slot: number;
  readonly path: string;
}

/** How a backend pools one sequence's final hidden states in a step (see StepInput.pooling). */
export type PoolingKind = "last" | "sum";

export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
}

/** The result for one sequence that had a SampleRequest. */
export interface SampledToken {
  readonly tokenId: number;
  /** Log-probability of `tokenId` (see ADR 0006 for which distribution). */
  readonly logprob: number;
  /** The `numTopLogprobs` most likely tokens, most likely first. */
  readonly topLogprobs: readonly TokenLogprob[];
}

export interface StepOutput {
  /** [numSeqs] aligned with `StepInput.samples`: null where no sample was requested. */
  readonly sampled: readonly (SampledToken | null)[];
  /**
   * [numSeqs] for sequences with draft tokens: the tokens verification emitted (accepted drafts,
   * then one sampled; `sampled[i]` is the first of them); null elsewhere. Absent when no
   * sequence had drafts.
   */
  readonly verified?: readonly (readonly SampledToken[] | null)[];
  /** [numSampled × vocabSize] raw logits of the sampled rows, only with `returnLogits`. */
  readonly logits?: Float32Array;
  /** [numSeqs] aligned with `StepInput.pooling`: [hiddenSize] vectors, null where not asked. */
  readonly pooled?: readonly (Float32Array | null)[];
  /**
   * With `StepInput.decodeSteps`: [numSeqs] the tokens each sequence's further steps sampled, in
   * order (empty when it ran one step). Absent otherwise.
   */
  readonly runs?: readonly (readonly SampledToken[])[];
}

/** Capacity and shape a backend reports once created; the worker registers with it. */
export interface BackendInfo {
  readonly name: "cpu" | "webgpu";
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly vocabSize: number;
  readonly maxModelLen: number;
  /** The CPU backend's kernel tier (ADR 0022): onednn, native-avx512, native-avx2, typescript… */
  readonly kernelTier?: string;
  /** How the KV pool stores keys and values (CPU backend; f32 when absent). */
  readonly kvCacheDtype?: KvCacheDtype;
  /**
   * The backend computes on another thread and honours `StepInput.masksReady`: the caller may
   * post a step before its grammar masks are computed and fill them while the forward pass runs.
   */
  readonly acceptsDeferredMasks?: boolean;
  /** The backend runs `StepInput.decodeSteps` on its own thread (ADR 0028). */
  readonly runsDecodeSteps?: boolean;
}

export interface Backend {
  readonly info: BackendInfo;
  /**
   * Runs one step: block copies, writes K/V of every scheduled token into its slot, computes
   * attention over each sequence's block table, samples. Steps must not overlap: the caller
   * awaits one before sending the next. Rejects with an Error on invalid input (a block id out
   * of range, lengths that disagree) without corrupting other sequences' KV.
   */
  step(input: StepInput): Promise<StepOutput>;
  /** Frees weights, KV memory and any thread. The backend is unusable afterwards. */
  dispose(): Promise<void>;
  /**
   * Why the backend can no longer compute (its thread crashed or exited, it was disposed), or
   * null while it can. Optional: a backend without it is assumed alive. The worker's Health
   * reports NOT_SERVING once this is set.
   */
  deadReason?(): string | null;
}

/** Options shared by every backend factory. */
export interface BackendOptions {
  /** A Hugging Face model directory (config.json + safetensors). */
  readonly modelDir: string;
  readonly numBlocks: number;
  /** Tokens per KV block; 16 by default. */
  readonly blockSize?: number;
  /** LoRA slots resident in the backend (KILN_MAX_LORAS); 0 by default: no adapters. */
  readonly maxLoras?: number;
  /** Highest adapter rank accepted (KILN_MAX_LORA_RANK); 64 by default. */
  readonly maxLoraRank?: number;
  /** Parsed adapters kept in host memory beyond the slots (KILN_MAX_CPU_LORAS); maxLoras by default. */
  readonly maxCpuLoras?: number;
  /** How projections are stored: "f32" (default), "bf16" or "int8" (KILN_WEIGHT_DTYPE, ADR 0020). */
  readonly weightDtype?: "f32" | "bf16" | "int8";
  /**
   * What bf16/int8 projections multiply their activations as: "f32" (default) or "bf16"
   * (KILN_ACTIVATION_DTYPE, ADR 0020): rounded to bfloat16, then AVX-512 BF16 dot products where
   * the CPU has them.
   */
  readonly activationDtype?: "f32" | "bf16";
  /**
   * How the KV pool stores keys and values: "f32" (default) or "bf16" (KILN_KV_CACHE_DTYPE,
   * ADR 0027): half the memory per block and half the bytes attention reads. bf16 needs the
   * native attention kernel.
   */
  readonly kvCacheDtype?: KvCacheDtype;
}

/** Bytes of KV memory (K and V over every layer, in `kvCacheDtype`) one block of `blockSize` tokens needs. */
export function kvBytesPerBlock(
  cfg: { numLayers: number; numKvHeads: number; headDim: number },
  blockSize: number,
  kvCacheDtype: KvCacheDtype = "f32",
): number {
  const elemBytes = kvCacheDtype === "bf16" ? 2 : 4;
  return 2 * cfg.numLayers * cfg.numKvHeads * cfg.headDim * blockSize * elemBytes;
}

/** How the KV pool stores keys and values (KILN_KV_CACHE_DTYPE; issue 20). */
export type KvCacheDtype = "f32" | "bf16";
export const KV_CACHE_DTYPES: readonly KvCacheDtype[] = ["f32", "bf16"];

/** Parses a KILN_KV_CACHE_DTYPE / --kv-cache-dtype value; throws Error naming the choices. */
export function parseKvCacheDtype(value: string): KvCacheDtype {
  if ((KV_CACHE_DTYPES as readonly string[]).includes(value)) return value as KvCacheDtype;
  throw new Error(`bad KV cache dtype "${value}": expected one of ${KV_CACHE_DTYPES.join(", ")}`);
}
