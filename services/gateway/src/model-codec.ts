import { ChatTemplateError, type Tokenizer } from "@kiln/model";
import { KilnError } from "@kiln/proto";
import type { ChatEncodeOptions, TextCodec, TokenPiece } from "./text-codec";

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const SENTENCEPIECE_SPACE = "▁";

/** TextCodec over a @kiln/model tokenizer. Token pieces are cached (the vocabulary is fixed). */
export function createModelCodec(tokenizer: Tokenizer): TextCodec {
  const pieces = new Map<number, TokenPiece>();
  return {
    vocabSize: tokenizer.vocabSize,
    encodePrompt: (text, opts) =>
      tokenizer.encode(text, { addSpecialTokens: opts?.addSpecialTokens ?? true }),
    encodeChat: async (messages, opts) =>
      tokenizer.encodeChat(renderChatWithTools(tokenizer, messages, opts ?? {})),
    decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }),
    // No prefix ids: a completion reads as `decode(completionIds)` (the golden texts do), so
    // its first token's leading space is stripped and streaming concatenates to the same text.
    createDetokenizer: () => tokenizer.createDetokenizer({ skipSpecialTokens: true }),
    tokenPiece: (id) => {
      let piece = pieces.get(id);
      if (!piece) {
        piece = tokenPieceOf(tokenizer, id);
        pieces.set(id, piece);
      }
      return piece;
    },
  };
}

type Messages = Parameters<TextCodec["encodeChat"]>[0];

/**
 * Tools go through the template's `tools` variable; a template that renders the same with and
 * without them ignores tools, so the messages get `toolsFallbackPrompt` as a system message.
 */
function renderChatWithTools(tokenizer: Tokenizer, messages: Messages, opts: ChatEncodeOptions) {
  const isPrompted = opts.addGenerationPrompt ?? true;
  if (opts.plainMessages && ignoresTools(tokenizer, messages, isPrompted)) {
    const plain = opts.plainMessages;
    if (!opts.tools?.length || !opts.toolsFallbackPrompt) {
      return renderChat(tokenizer, plain, isPrompted);
    }
    const system = { role: "system" as const, content: opts.toolsFallbackPrompt };
    return renderChat(tokenizer, [system, ...plain], isPrompted);
  }
  if (!opts.tools?.length) return renderChat(tokenizer, messages, isPrompted);
  const withTools = renderChat(tokenizer, messages, isPrompted, opts.tools);
  if (withTools !== renderChat(tokenizer, messages, isPrompted) || !opts.toolsFallbackPrompt) {
    return withTools;
  }
  const system = { role: "system" as const, content: opts.toolsFallbackPrompt };
  return renderChat(tokenizer, [system, ...messages], isPrompted);
}

const PROBE_TOOL = {
  type: "function",
  function: { name: "probe", parameters: { type: "object" } },
};

/** The template renders the same with and without a tool: it has no tool support. */
function ignoresTools(tokenizer: Tokenizer, messages: Messages, isPrompted: boolean): boolean {
  return (
    renderChat(tokenizer, messages, isPrompted, [PROBE_TOOL]) ===
    renderChat(tokenizer, messages, isPrompted)
  );
}

function renderChat(
  tokenizer: Tokenizer,
  messages: Messages,
  addGenerationPrompt: boolean,
  tools?: readonly unknown[],
) {
  try {
    // Copies: the template reads plain records (an index signature our interface lacks).
    const records = messages.map((m) => ({ ...m }));
    return tokenizer.renderChat(records, { addGenerationPrompt, ...(tools ? { tools } : {}) });
  } catch (err) {
    if (err instanceof ChatTemplateError && err.code !== "CHAT_TEMPLATE_FAILED") {
      const hint = err.code === "NO_CHAT_TEMPLATE" ? " Use /v1/completions instead." : "";
      throw new KilnError("INVALID_REQUEST", `${err.message}${hint}`, "messages");
    }
    throw err;
  }
}

/**
 * One token's text as it reads inside a longer text. Sentencepiece pieces ("▁there",
 * "<0x0A>") are converted directly, because decoding a lone token strips its leading space;
 * other tokenizers (byte-level BPE) decode a lone token faithfully.
 */
export function tokenPieceOf(tokenizer: Tokenizer, id: number): TokenPiece {
  const piece = tokenizer.idToPiece(id) ?? "";
  const byte = BYTE_PIECE.exec(piece);
  if (byte) return fromBytes([Number.parseInt(byte[1]!, 16)]);
  if (piece.includes(SENTENCEPIECE_SPACE) || tokenizer.isSpecial(id)) {
    return fromText(piece.replaceAll(SENTENCEPIECE_SPACE, " "));
  }
  const text = tokenizer.decode([id]);
  if (!text.includes("\uFFFD")) return fromText(text);
  const bytes = byteLevelBytes(piece);
  return bytes ? fromBytes(bytes) : fromText(text);
}

function fromText(text: string): TokenPiece {
  return { text, bytes: [...Buffer.from(text, "utf8")] };
}

/** Bytes that are not one whole UTF-8 text read as `bytes:\xe2\x80` (OpenAI's convention). */
function fromBytes(bytes: readonly number[]): TokenPiece {
  const text = Buffer.from(bytes).toString("utf8");
  if (!text.includes("\uFFFD")) return { text, bytes };
  const hex = bytes.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
  return { text: `bytes:${hex}`, bytes };
}

let byteLevelDecoder: Map<string, number> | null = null;

/** GPT-2's byte-to-unicode table inverted: a byte-level BPE piece back to its bytes. */
function byteLevelBytes(piece: string): number[] | null {
  if (!byteLevelDecoder) {
    byteLevelDecoder = new Map();
    let extra = 0;
    for (let b = 0; b < 256; b++) {
      const isPrintable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      byteLevelDecoder.set(String.fromCodePoint(isPrintable ? b : 256 + extra++), b);
    }
  }
  const out: number[] = [];
  for (const ch of piece) {
    const b = byteLevelDecoder.get(ch);
    if (b === undefined) return null;
    out.push(b);
  }
  return out;
}
