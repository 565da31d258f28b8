import { LLAMA2_TOKENIZER_DIR, STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { readGgufVocab, TokenType } from "./vocab";

describe("readGgufVocab", () => {
  it("rebuilds stories260K's tokenizer.model exactly from tokenizer.json", async () => {
    const dir = STORIES_DIR;
    const sp = await readGgufVocab(dir, 512);
    const json = await readGgufVocab(dir, 512, { ignoreSentencePieceModel: true });
    expect(sp.source).toBe("tokenizer.model");
    expect(json.source).toBe("tokenizer.json");
    expect(json.tokens).toEqual(sp.tokens);
    expect([...json.tokenTypes]).toEqual([...sp.tokenTypes]);
    expect([...json.scores]).toEqual([...sp.scores]);
    expect(sp.tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect([...sp.tokenTypes.slice(0, 4)]).toEqual([
      TokenType.UNKNOWN,
      TokenType.CONTROL,
      TokenType.CONTROL,
      TokenType.BYTE,
    ]);
  });

  it("matches Llama-2's tokenizer.model but for the pieces Meta pinned by hand", async () => {
    const dir = LLAMA2_TOKENIZER_DIR;
    const sp = await readGgufVocab(dir, 32000);
    const json = await readGgufVocab(dir, 32000, { ignoreSentencePieceModel: true });
    const differing = sp.tokens
      .map((_, id) => id)
      .filter((id) => sp.tokens[id] !== json.tokens[id] || sp.scores[id] !== json.scores[id]);
    // 16 runs of "▁" pinned at −1e9, and U+2028, which tokenizer.json stores as "".
    expect(differing.length).toBe(17);
    expect(differing.every((id) => /^▁+$/.test(sp.tokens[id]!) || id === 31353)).toBe(true);
    expect(sp.tokens[30143]).toBe("\uFEFF"); // not dropped as a byte-order mark
    expect([...json.tokenTypes]).toEqual([...sp.tokenTypes]);
  });

  it("pads a vocabulary smaller than the embedding with unused tokens", async () => {
    const vocab = await readGgufVocab(STORIES_DIR, 515);
    expect(vocab.tokens.slice(512)).toEqual(["[PAD512]", "[PAD513]", "[PAD514]"]);
    expect(vocab.tokenTypes[514]).toBe(TokenType.UNUSED);
  });
});
