import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * The vocabulary llama.cpp's SentencePiece ("llama") tokenizer reads from GGUF:
 * `tokenizer.ggml.tokens`, `.scores` and `.token_type`, one entry per token id.
 *
 * llama.cpp's SPM tokenizer merges the adjacent pair whose merged piece has the highest
 * score, so scores must rank pieces the way SentencePiece does. We take them from
 * `tokenizer.model` when the directory has one (exact), and otherwise rebuild them from
 * tokenizer.json: SentencePiece BPE numbers its normal pieces in score order, one apart, so
 * score = −(id − first normal id). (Llama-2's 16 whitespace-run pieces, which Meta pinned at
 * −1e9, are the known exception: runs of spaces may tokenize differently.) Detokenization
 * reads only pieces and types.
 */

/** SentencePiece piece types; GGUF's `token_type` uses the same numbers. */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface GgufVocab {
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly tokenTypes: Int32Array;
  /** Where the scores came from, for the export log. */
  readonly source: "tokenizer.model" | "tokenizer.json";
}

// --- SentencePiece ModelProto ------------------------------------------------------------
// ModelProto { repeated SentencePiece pieces = 1; ... }
// SentencePiece { string piece = 1; float score = 2; Type type = 3 [default NORMAL]; }

function readVarint(buf: Uint8Array, pos: { at: number }): number {
  let result = 0;
  let mul = 1;
  for (;;) {
    const byte = buf[pos.at++];
    if (byte === undefined) throw new Error("tokenizer.model: truncated varint");
    result += (byte & 0x7f) * mul;
    if (byte < 0x80) return result;
    mul *= 128;
  }
}

/** Skips one field of wire type `wire` (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
function skipField(buf: Uint8Array, wire: number, pos: { at: number }): void {
  if (wire === 0) readVarint(buf, pos);
  else if (wire === 1) pos.at += 8;
  else if (wire === 2) {
    const len = readVarint(buf, pos); // read first: `pos.at += f(pos)` would lose f's advance
    pos.at += len;
  } else if (wire === 5) pos.at += 4;
  else throw new Error(`tokenizer.model: unsupported protobuf wire type ${wire}`);
}

interface Piece {
  piece: string;
  score: number;
  type: number;
}

function parsePiece(buf: Uint8Array): Piece {
  const out: Piece = { piece: "", score: 0, type: TokenType.NORMAL };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const pos = { at: 0 };
  while (pos.at < buf.length) {
    const tag = readVarint(buf, pos);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 2) {
      const len = readVarint(buf, pos);
      // ignoreBOM: a piece may be U+FEFF itself, which the default decoder would drop.
      out.piece = new TextDecoder("utf-8", { ignoreBOM: true }).decode(
        buf.subarray(pos.at, pos.at + len),
      );
      pos.at += len;
    } else if (field === 2 && wire === 5) {
      out.score = view.getFloat32(pos.at, true);
      pos.at += 4;
    } else if (field === 3 && wire === 0) {
      out.type = readVarint(buf, pos);
    } else {
      skipField(buf, wire, pos);
    }
  }
  return out;
}

/** The pieces of a serialized SentencePiece ModelProto, in id order. */
export function parseSentencePieceModel(buf: Uint8Array): Piece[] {
  const pieces: Piece[] = [];
  const pos = { at: 0 };
  while (pos.at < buf.length) {
    const tag = readVarint(buf, pos);
    const wire = tag & 7;
    if (Math.floor(tag / 8) === 1 && wire === 2) {
      const len = readVarint(buf, pos);
      pieces.push(parsePiece(buf.subarray(pos.at, pos.at + len)));
      pos.at += len;
    } else {
      skipField(buf, wire, pos);
    }
  }
  return pieces;
}

// --- tokenizer.json fallback ---------------------------------------------------------------

interface TokenizerJson {
  model: { type: string; vocab: Record<string, number> };
  added_tokens?: { id: number; content: string; special: boolean }[];
}

function vocabFromTokenizerJson(json: TokenizerJson, unkId: number | null): Piece[] {
  if (json.model.type !== "BPE") {
    throw new Error(`tokenizer.json: model type ${json.model.type}, expected BPE (SentencePiece)`);
  }
  const pieces: Piece[] = [];
  for (const [piece, id] of Object.entries(json.model.vocab)) {
    const isByte = /^<0x[0-9A-F]{2}>$/.test(piece);
    pieces[id] = { piece, score: 0, type: isByte ? TokenType.BYTE : TokenType.NORMAL };
  }
  for (const added of json.added_tokens ?? []) {
    const type = added.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    pieces[added.id] = { piece: added.content, score: 0, type };
  }
  if (unkId !== null && pieces[unkId]) pieces[unkId]!.type = TokenType.UNKNOWN;
  // SentencePiece BPE stores pieces sorted by score, one apart: score = −(id − first normal id).
  const firstNormal = pieces.findIndex((p) => p?.type === TokenType.NORMAL);
  pieces.forEach((p, id) => {
    if (p?.type === TokenType.NORMAL) p.score = -(id - firstNormal);
  });
  return pieces;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Reads the vocabulary of an HF Llama directory, padded (as UNUSED) or checked against
 * `vocabSize` so it matches the embedding's row count, which llama.cpp requires.
 * `ignoreSentencePieceModel` forces the tokenizer.json path (tests compare the two).
 */
export async function readGgufVocab(
  dir: string,
  vocabSize: number,
  opts: { readonly ignoreSentencePieceModel?: boolean } = {},
): Promise<GgufVocab> {
  const spPath = join(dir, "tokenizer.model");
  let pieces: Piece[];
  let source: GgufVocab["source"];
  if (!opts.ignoreSentencePieceModel && (await exists(spPath))) {
    pieces = parseSentencePieceModel(new Uint8Array(await readFile(spPath)));
    source = "tokenizer.model";
  } else {
    const json = JSON.parse(await readFile(join(dir, "tokenizer.json"), "utf8")) as TokenizerJson;
    const unk = json.added_tokens?.find((t) => t.content === "<unk>")?.id ?? null;
    pieces = vocabFromTokenizerJson(json, unk);
    source = "tokenizer.json";
  }
  if (pieces.length > vocabSize) {
    throw new Error(`${dir}: tokenizer has ${pieces.length} tokens, the model only ${vocabSize}`);
  }
  const tokens: string[] = [];
  const scores = new Float32Array(vocabSize);
  const tokenTypes = new Int32Array(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    const p = pieces[id] ?? { piece: `[PAD${id}]`, score: 0, type: TokenType.UNUSED };
    tokens.push(p.piece);
    scores[id] = p.score;
    tokenTypes[id] = p.type;
  }
  return { tokens, scores, tokenTypes, source };
}
