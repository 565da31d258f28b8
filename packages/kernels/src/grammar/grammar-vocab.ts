import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { GrammarVocab } from "./grammar-engine";

interface TokenizerJson {
  readonly model?: { readonly vocab?: Record<string, number> };
  readonly added_tokens?: readonly { readonly id: number; readonly content: string }[];
  readonly decoder?: unknown;
  readonly pre_tokenizer?: unknown;
  readonly normalizer?: unknown;
}

/**
 * The vocabulary of a Hugging Face model directory's tokenizer.json as XGrammar wants it: every
 * id's stored string, and how those strings map to bytes (a ByteFallback decoder: SentencePiece
 * `▁` and `<0xNN>` tokens; a ByteLevel one: GPT-2's byte-to-unicode map).
 */
export async function loadGrammarVocab(
  modelDir: string,
  vocabSize: number,
  stopTokenIds: readonly number[],
): Promise<GrammarVocab> {
  const json = JSON.parse(
    await readFile(join(modelDir, "tokenizer.json"), "utf8"),
  ) as TokenizerJson;
  const encodedVocab: string[] = new Array(vocabSize).fill("");
  for (const [token, id] of Object.entries(json.model?.vocab ?? {})) {
    if (id >= 0 && id < vocabSize) encodedVocab[id] = token;
  }
  for (const added of json.added_tokens ?? []) {
    if (added.id >= 0 && added.id < vocabSize) encodedVocab[added.id] = added.content;
  }
  const described = JSON.stringify([json.decoder, json.pre_tokenizer]);
  const vocabType = described.includes('"ByteFallback"')
    ? "byte_fallback"
    : described.includes('"ByteLevel"')
      ? "byte_level"
      : "raw";
  const prependSpace = JSON.stringify(json.normalizer ?? null).includes('"Prepend"');
  return { encodedVocab, vocabType, prependSpace, vocabSize, stopTokenIds };
}
