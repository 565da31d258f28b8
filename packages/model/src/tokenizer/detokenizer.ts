/**
 * Turns a stream of generated token ids into text, for streaming responses.
 *
 * Contract: the concatenation of everything `push` and `flush` return equals
 * `tokenizer.decode(allIds, { skipSpecialTokens })` (with `prefixIds`: the text the pushed
 * ids add after the prompt, see DetokenizerOptions). Text once returned never changes: it
 * holds no partial UTF-8 character and no lone surrogate.
 */
export interface IncrementalDetokenizer {
  /** Appends ids; returns the text they complete, often "" (a character split over
   * byte-fallback tokens is held until its last byte arrives). Throws after `flush`. */
  push(ids: readonly number[]): string;
  /** Ends the stream and returns the held text; an incomplete character becomes U+FFFD,
   * as `decode` renders it. Later calls return "". */
  flush(): string;
  /** Everything returned so far by `push` and `flush`. */
  readonly text: string;
}

export interface DetokenizerOptions {
  /** Leave out special tokens ("</s>"), as `decode` does with the same flag. Default false. */
  readonly skipSpecialTokens?: boolean;
  /**
   * Ids already decoded elsewhere, usually the prompt. Their text is not returned, but it
   * decides how the first pushed ids read: a generated "▁Hello" keeps its space after a
   * prompt, where a standalone decode strips it. If the prompt ends inside a character,
   * that whole character is returned with the pushed ids that complete it.
   */
  readonly prefixIds?: readonly number[];
}

/** What the detokenizer needs from a tokenizer. */
export interface DetokenizerSource {
  /** Decodes ids as `Tokenizer.decode` does without skipping anything. */
  decodeIds(ids: readonly number[]): string;
  isSpecial(id: number): boolean;
  /** A token whose text is not changed by its neighbours (see findAnchorId). */
  readonly anchorId: number;
}

const REPLACEMENT_CHAR = "\uFFFD";

// Every id that can leave a character incomplete adds at least one byte of it, and a
// UTF-8 character has at most four: at most three trailing ids are ever held back.
const MAX_HELD_IDS = 3;

/**
 * Window decoding (as vLLM does it): only the ids whose text is not yet final are kept, and
 * they are decoded after an anchor token so that the tokenizer's leading-space strip, which
 * applies to the first token of a whole text, hits the anchor instead. The window's text is
 * final once it does not end in U+FFFD: every decoder Kiln loads replaces bytes like
 * TextDecoder does, so no later byte can change text that ends in a complete character.
 */
class WindowDetokenizer implements IncrementalDetokenizer {
  private readonly source: DetokenizerSource;
  private readonly isSkippingSpecial: boolean;
  private readonly anchorText: string;
  /** Ids whose text has not been returned yet, in order; their text starts the window. */
  private pending: number[] = [];
  /** False until the first text is final: until then the strip applies to the window. */
  private isAnchored = false;
  private isFlushed = false;
  private emitted = "";

  constructor(source: DetokenizerSource, opts: DetokenizerOptions) {
    this.source = source;
    this.isSkippingSpecial = opts.skipSpecialTokens ?? false;
    this.anchorText = source.decodeIds([source.anchorId]);
    if (opts.prefixIds !== undefined && opts.prefixIds.length > 0) {
      this.push(opts.prefixIds);
      this.emitted = "";
    }
  }

  get text(): string {
    return this.emitted;
  }

  push(ids: readonly number[]): string {
    if (this.isFlushed) throw new Error("IncrementalDetokenizer.push after flush");
    for (const id of ids) {
      if (!(this.isSkippingSpecial && this.source.isSpecial(id))) this.pending.push(id);
    }
    return this.commitStable();
  }

  flush(): string {
    if (this.isFlushed) return "";
    this.isFlushed = true;
    if (this.pending.length === 0) return "";
    return this.commit(this.pending.length, this.windowText(this.pending.length));
  }

  /** Returns the text of the longest prefix of `pending` (dropping at most MAX_HELD_IDS
   * ids) whose text is final, and forgets those ids; "" when no such prefix exists. */
  private commitStable(): string {
    const numPending = this.pending.length;
    const minLen = Math.max(1, numPending - MAX_HELD_IDS);
    for (let len = numPending; len >= minLen; len--) {
      const text = this.windowText(len);
      if (this.isFinal(text)) return this.commit(len, text);
    }
    return "";
  }

  private isFinal(text: string): boolean {
    // Before the first text, an empty window may be a lone "▁" whose space the strip ate:
    // committing it would move the strip, so wait for visible text.
    if (!this.isAnchored && text.length === 0) return false;
    return !text.endsWith(REPLACEMENT_CHAR);
  }

  private commit(numIds: number, text: string): string {
    this.pending = this.pending.slice(numIds);
    if (text.length > 0) this.isAnchored = true;
    this.emitted += text;
    return text;
  }

  /** Text of the first `len` pending ids, as it reads after everything already returned. */
  private windowText(len: number): string {
    const ids = this.pending.slice(0, len);
    if (!this.isAnchored) return this.source.decodeIds(ids);
    return this.source.decodeIds([this.source.anchorId, ...ids]).slice(this.anchorText.length);
  }
}

/** A detokenizer over `source`; see IncrementalDetokenizer for the contract. */
export function createWindowDetokenizer(
  source: DetokenizerSource,
  opts: DetokenizerOptions = {},
): IncrementalDetokenizer {
  return new WindowDetokenizer(source, opts);
}

// Plain ASCII pieces, tried first because any tokenizer that has them decodes them as-is.
const ANCHOR_CANDIDATES = ["a", "e", "x", "0", "!", "."];

/**
 * Finds an anchor: a non-special token whose text is non-empty, starts with no whitespace
 * (so a leading-space strip leaves it alone), ends in a complete character, and reads the
 * same twice in a row. Returns null when the vocabulary has none.
 */
export function findAnchorId(
  source: Omit<DetokenizerSource, "anchorId">,
  pieceToId: (piece: string) => number | null,
  vocabSize: number,
): number | null {
  const isAnchor = (id: number): boolean => {
    if (source.isSpecial(id)) return false;
    const text = source.decodeIds([id]);
    if (text.length === 0 || text.trimStart() !== text || text.includes(REPLACEMENT_CHAR)) {
      return false;
    }
    return source.decodeIds([id, id]) === text + text;
  };
  for (const piece of ANCHOR_CANDIDATES) {
    const id = pieceToId(piece);
    if (id !== null && isAnchor(id)) return id;
  }
  for (let id = 0; id < vocabSize; id++) {
    if (isAnchor(id)) return id;
  }
  return null;
}
