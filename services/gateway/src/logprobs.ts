import type { SampledToken } from "@kiln/proto";
import type { TextCodec } from "./text-codec";

/** One entry of `choices[].logprobs.content` in a chat completion. */
export interface ChatTokenLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: number[];
  readonly top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** `choices[].logprobs` of a legacy completion (parallel arrays, one entry per token). */
export interface CompletionLogprobs {
  readonly tokens: string[];
  readonly token_logprobs: (number | null)[];
  readonly top_logprobs: (Record<string, number> | null)[];
  readonly text_offset: number[];
}

/** Chat logprobs of `tokens`, with `numTop` alternatives each (the router's order kept). */
export function chatLogprobs(
  codec: TextCodec,
  tokens: readonly SampledToken[],
  numTop: number,
): ChatTokenLogprob[] {
  return tokens.map((t) => {
    const piece = codec.tokenPiece(t.tokenId);
    return {
      token: piece.text,
      logprob: t.logprob,
      bytes: [...piece.bytes],
      top_logprobs: t.topLogprobs.slice(0, numTop).map((alt) => {
        const altPiece = codec.tokenPiece(alt.tokenId);
        return { token: altPiece.text, logprob: alt.logprob, bytes: [...altPiece.bytes] };
      }),
    };
  });
}

/**
 * Builds completion logprobs across deltas: `text_offset` continues from one call to the next,
 * so streamed chunks carry the same offsets as the whole response.
 */
export class CompletionLogprobsBuilder {
  private offset: number;

  constructor(
    private readonly codec: TextCodec,
    private readonly numTop: number,
    startOffset = 0,
  ) {
    this.offset = startOffset;
  }

  /** Moves the next token's text offset (to the end of echoed prompt text). */
  seek(offset: number): void {
    this.offset = offset;
  }

  /** Entries for generated tokens (their logprobs known). */
  add(tokens: readonly SampledToken[]): CompletionLogprobs {
    const out = emptyCompletionLogprobs();
    for (const t of tokens) {
      const text = this.codec.tokenPiece(t.tokenId).text;
      const top: Record<string, number> = {};
      for (const alt of t.topLogprobs.slice(0, this.numTop)) {
        top[this.codec.tokenPiece(alt.tokenId).text] = alt.logprob;
      }
      this.push(out, text, t.logprob, this.numTop > 0 ? top : null);
    }
    return out;
  }

  /** Entries for echoed prompt tokens: Kiln does not compute prompt logprobs, so all null. */
  addPrompt(ids: readonly number[]): CompletionLogprobs {
    const out = emptyCompletionLogprobs();
    for (const id of ids) this.push(out, this.codec.tokenPiece(id).text, null, null);
    return out;
  }

  private push(
    out: CompletionLogprobs,
    text: string,
    logprob: number | null,
    top: Record<string, number> | null,
  ): void {
    out.tokens.push(text);
    out.token_logprobs.push(logprob);
    out.top_logprobs.push(top);
    out.text_offset.push(this.offset);
    this.offset += text.length;
  }
}

export function emptyCompletionLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/** Appends `b` to `a` in place (for non-streamed responses built from deltas). */
export function appendCompletionLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): void {
  a.tokens.push(...b.tokens);
  a.token_logprobs.push(...b.token_logprobs);
  a.top_logprobs.push(...b.top_logprobs);
  a.text_offset.push(...b.text_offset);
}
