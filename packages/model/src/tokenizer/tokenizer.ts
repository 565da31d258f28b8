import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { Tokenizer as NativeTokenizer } from "tokenizers";
import { hasErrnoCode, ModelError } from "../errors";
import {
  type ChatMessage,
  type ChatTemplate,
  createChatTemplate,
  noChatTemplateError,
  type RenderChatOptions,
} from "./chat-template";
import {
  createWindowDetokenizer,
  type DetokenizerOptions,
  type DetokenizerSource,
  findAnchorId,
  type IncrementalDetokenizer,
} from "./detokenizer";
import { planSpecialTokens, type SpecialTokensPlan } from "./special-tokens-plan";
import { loadTokenizerSettings, type TokenizerSettings } from "./tokenizer-settings";

export interface EncodeOptions {
  /** Add the tokens the model expects around a text (BOS for Llama). Default true. */
  readonly addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens ("<s>", "</s>", "<unk>"). Default false. */
  readonly skipSpecialTokens?: boolean;
}

/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json). Immutable after
 * loading and safe to share between requests. See docs/adr/0004-tokenizer-library.md.
 */
export interface Tokenizer {
  /** Number of ids, added tokens included (every valid id is below it). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  /** The tokenizer's end-of-sequence id, when it names one. Callers add the
   * generation_config.json eos ids themselves: this list comes from the tokenizer files. */
  readonly eosTokenIds: readonly number[];
  /** BOS token text ("<s>"), as chat templates write it; null when the model has none. */
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** Whether `encode` with special tokens starts with BOS (tokenizer_config.json's
   * add_bos_token; the post-processor's behaviour when the config does not say). */
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  /** The model's chat template, or null when it ships none. */
  readonly chatTemplate: ChatTemplate | null;
  /**
   * Text to ids. Runs on the native thread pool: a long prompt does not block the event
   * loop. Special-token text in `text` ("<s>") becomes the special id, as in transformers;
   * the result never starts with two BOS ids unless the text itself spells one.
   */
  encode(text: string, opts?: EncodeOptions): Promise<number[]>;
  /**
   * Tokenizes a prompt rendered by `renderChat`. Templates write special tokens as text
   * (Llama-2's starts with "<s>"), so this never adds EOS, and adds BOS only when
   * `addBosToken` is set and the text does not already start with the BOS text.
   */
  encodeChat(renderedText: string): Promise<number[]>;
  /**
   * Ids to text, synchronously. A leading space of the first token is stripped (the
   * sentencepiece convention); byte-fallback bytes that do not form valid UTF-8 become
   * U+FFFD as TextDecoder replaces them. Ids outside the vocabulary are skipped.
   */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** The vocabulary entry ("▁Hello", "<0x0A>"), or null when `id` is out of range. */
  idToPiece(id: number): string | null;
  /** The id of a vocabulary entry, or null when there is none. */
  pieceToId(piece: string): number | null;
  isSpecial(id: number): boolean;
  /** A fresh streaming detokenizer; see IncrementalDetokenizer. */
  createDetokenizer(opts?: DetokenizerOptions): IncrementalDetokenizer;
  /** Renders `messages` with the chat template. Throws ChatTemplateError: code
   * NO_CHAT_TEMPLATE when the model has none, see ChatTemplate.render for the others. */
  renderChat(messages: readonly ChatMessage[], opts?: RenderChatOptions): string;
}

/**
 * Loads `<dir>/tokenizer.json` with tokenizer_config.json and special_tokens_map.json
 * (both optional). Throws ModelError: NOT_FOUND without tokenizer.json, INVALID_CONFIG when
 * a file is malformed or names a special token the vocabulary lacks.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const path = join(dir, "tokenizer.json");
  const [source, settings] = await Promise.all([
    readTokenizerJson(path),
    loadTokenizerSettings(dir),
  ]);
  let native: NativeTokenizer;
  let decoder: JsTokenizer;
  try {
    native = NativeTokenizer.fromString(source);
    decoder = createDecoder(JSON.parse(source));
  } catch (err) {
    throw new ModelError("INVALID_CONFIG", `${path}: ${(err as Error).message}`, { cause: err });
  }
  const plan = await planSpecialTokens(native, settings, path);
  return new HfTokenizer(native, decoder, settings, plan);
}

async function readTokenizerJson(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (hasErrnoCode(err, "ENOENT")) {
      throw new ModelError("NOT_FOUND", `${path} does not exist`, { cause: err });
    }
    throw err;
  }
}

/**
 * The pure-JS tokenizer, kept only for its synchronous decoder and vocabulary. Encoding
 * goes to the native one, so the parts only encoding uses are dropped: JS regexes cannot
 * express every Oniguruma pre-tokenizer pattern, and BPE merges cost load time.
 */
function createDecoder(json: Record<string, unknown>): JsTokenizer {
  const model = json["model"] as Record<string, unknown>;
  const decodeOnly = {
    ...json,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    model: model["type"] === "BPE" ? { ...model, merges: [] } : model,
  };
  return new JsTokenizer(decodeOnly, { clean_up_tokenization_spaces: false });
}

class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  readonly chatTemplate: ChatTemplate | null;
  private readonly native: NativeTokenizer;
  private readonly decoder: JsTokenizer;
  private readonly plan: SpecialTokensPlan;
  private readonly specialIds: ReadonlySet<number>;
  private readonly detokenizerSource: DetokenizerSource;

  constructor(
    native: NativeTokenizer,
    decoder: JsTokenizer,
    settings: TokenizerSettings,
    plan: SpecialTokensPlan,
  ) {
    this.native = native;
    this.decoder = decoder;
    this.plan = plan;
    this.vocabSize = native.getVocabSize(true);
    this.bosTokenId = plan.bosTokenId;
    this.eosTokenIds = plan.eosTokenId === null ? [] : [plan.eosTokenId];
    this.bosToken = plan.bosTokenId === null ? null : settings.bosToken;
    this.eosToken = plan.eosTokenId === null ? null : settings.eosToken;
    this.addBosToken = plan.addBosToken;
    this.addEosToken = plan.addEosToken;
    this.specialIds = new Set(
      [...decoder.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id),
    );
    this.chatTemplate = createChatTemplate(settings.chatTemplates, settings);
    this.detokenizerSource = this.createDetokenizerSource();
  }

  async encode(text: string, opts: EncodeOptions = {}): Promise<number[]> {
    const isAdding = opts.addSpecialTokens ?? true;
    const isNative = isAdding && this.plan.isNative;
    const ids = (await this.native.encode(text, null, { addSpecialTokens: isNative })).getIds();
    if (!isAdding || isNative) return ids;
    return this.withSpecialTokens(ids, this.addBosToken, this.addEosToken);
  }

  async encodeChat(renderedText: string): Promise<number[]> {
    const ids = await this.encode(renderedText, { addSpecialTokens: false });
    const hasBosText = this.bosToken !== null && renderedText.startsWith(this.bosToken);
    return this.withSpecialTokens(ids, this.addBosToken && !hasBosText, false);
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    // Special ids are dropped here rather than by the library, so that `decode` and the
    // detokenizer share one code path.
    const kept = opts.skipSpecialTokens ? ids.filter((id) => !this.specialIds.has(id)) : ids;
    return this.decodeIds(kept);
  }

  idToPiece(id: number): string | null {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return null;
    return this.decoder.id_to_token(id) ?? null;
  }

  pieceToId(piece: string): number | null {
    return this.decoder.token_to_id(piece) ?? null;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  createDetokenizer(opts: DetokenizerOptions = {}): IncrementalDetokenizer {
    return createWindowDetokenizer(this.detokenizerSource, opts);
  }

  renderChat(messages: readonly ChatMessage[], opts: RenderChatOptions = {}): string {
    if (this.chatTemplate === null) throw noChatTemplateError();
    return this.chatTemplate.render(messages, opts);
  }

  private decodeIds(ids: readonly number[]): string {
    // Unknown ids are skipped, as the Rust crate does (the library would print the unk
    // token, or fail for vocabularies without one).
    const isValid = (id: number) => Number.isInteger(id) && id >= 0 && id < this.vocabSize;
    const known = ids.every(isValid) ? ids : ids.filter(isValid);
    // The library rejects an empty list instead of returning "".
    if (known.length === 0) return "";
    return this.decoder.decode(known as number[], { clean_up_tokenization_spaces: false });
  }

  private withSpecialTokens(ids: number[], isAddingBos: boolean, isAddingEos: boolean): number[] {
    const bos = isAddingBos && this.bosTokenId !== null ? [this.bosTokenId] : [];
    const eos = isAddingEos && this.eosTokenIds[0] !== undefined ? [this.eosTokenIds[0]] : [];
    return bos.length + eos.length === 0 ? ids : [...bos, ...ids, ...eos];
  }

  private createDetokenizerSource(): DetokenizerSource {
    const base = {
      decodeIds: (ids: readonly number[]) => this.decodeIds(ids),
      isSpecial: (id: number) => this.specialIds.has(id),
    };
    const anchorId = findAnchorId(base, (p) => this.pieceToId(p), this.vocabSize);
    if (anchorId === null) {
      throw new ModelError(
        "INVALID_CONFIG",
        "tokenizer.json: no token can anchor streaming decode",
      );
    }
    return { ...base, anchorId };
  }
}
