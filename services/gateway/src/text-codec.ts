/**
 * Everything the gateway needs from a tokenizer. Text exists only in the gateway: prompts are
 * encoded here and sampled ids decoded here. `model-codec.ts` implements it over @kiln/model;
 * tests may use a toy implementation.
 */
export interface TextCodec {
  /** Number of token ids the model knows; valid ids are 0 .. vocabSize - 1. */
  readonly vocabSize: number;
  /** Prompt text → ids, with the special tokens (BOS) the tokenizer adds by default. */
  encodePrompt(text: string, opts?: { readonly addSpecialTokens?: boolean }): Promise<number[]>;
  /**
   * Renders the model's chat template with `add_generation_prompt` and encodes it, never with a
   * double BOS. Throws KilnError("INVALID_REQUEST") when the model has no chat template or the
   * template rejects the messages.
   */
  encodeChat(messages: readonly ChatMessage[], opts?: ChatEncodeOptions): Promise<number[]>;
  /** Ids → text, special tokens skipped (used to echo token-id prompts). */
  decode(ids: readonly number[]): string;
  /** A fresh incremental detokenizer for one choice (state is owned by the caller). */
  createDetokenizer(): Detokenizer;
  /** One token as text inside a longer text (a leading space kept), for logprobs. */
  tokenPiece(id: number): TokenPiece;
}

export interface ChatEncodeOptions {
  /** Default true: end with the cue for the assistant's turn. */
  readonly addGenerationPrompt?: boolean;
  /** Tool definitions for the template's `tools` variable (chat API shape). */
  readonly tools?: readonly unknown[];
  /** A system message put first when the template ignores `tools` (it renders the same). */
  readonly toolsFallbackPrompt?: string;
  /**
   * The conversation with tool turns written as plain text (ADR 0016), rendered instead of the
   * messages when the template ignores `tools`: such a template drops `tool` messages and
   * assistant `tool_calls`.
   */
  readonly plainMessages?: readonly ChatMessage[];
}

/** A message after validation: content already flattened to one string. */
export interface ChatMessage {
  readonly role: "system" | "developer" | "user" | "assistant" | "tool";
  readonly content: string;
  readonly name?: string;
  /** An assistant turn's calls, in the chat API's shape (passed to the template as is). */
  readonly tool_calls?: readonly ChatToolCall[];
  /** A `tool` turn: the call it answers. */
  readonly tool_call_id?: string;
}

export interface ChatToolCall {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; readonly arguments: string };
}

/**
 * Incremental detokenization of one sequence. Concatenating every `push` result and the final
 * `flush` gives the decoding of all ids at once; `push` emits only complete UTF-8 characters.
 */
export interface Detokenizer {
  push(ids: readonly number[]): string;
  /** Whatever was held back (an incomplete character at the end becomes U+FFFD). */
  flush(): string;
}

export interface TokenPiece {
  /** The token's text, or `bytes:\xNN...` when its bytes are not a whole UTF-8 character. */
  readonly text: string;
  /** The token's UTF-8 bytes. */
  readonly bytes: readonly number[];
}
