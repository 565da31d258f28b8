import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LLAMA2_TOKENIZER_DIR, STORIES_DIR } from "@kiln/test-support";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer";

let stories: Tokenizer;
let llama2: Tokenizer;
let byteLevel: Tokenizer;
let byteLevelDir: string;

beforeAll(async () => {
  byteLevelDir = await mkdtemp(join(tmpdir(), "kiln-bytelevel-"));
  await writeFile(join(byteLevelDir, "tokenizer.json"), JSON.stringify(byteLevelTokenizerJson()));
  [stories, llama2, byteLevel] = await Promise.all([
    loadTokenizer(STORIES_DIR),
    loadTokenizer(LLAMA2_TOKENIZER_DIR),
    loadTokenizer(byteLevelDir),
  ]);
});

afterAll(async () => {
  await rm(byteLevelDir, { recursive: true, force: true });
});

/** GPT-2's printable stand-ins for the 256 byte values (bytes_to_unicode). */
function byteLevelAlphabet(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let numShifted = 0;
  return Array.from({ length: 256 }, (_, b) =>
    String.fromCodePoint(printable(b) ? b : 256 + numShifted++),
  );
}

/**
 * A tiny Llama-3 / Qwen2-style tokenizer: byte-level BPE whose merges make tokens that hold
 * part of a character (the first two and three bytes of 😀, the "é" pair) and a special token.
 */
function byteLevelTokenizerJson(): Record<string, unknown> {
  const alphabet = byteLevelAlphabet();
  const chars = (bytes: number[]) => bytes.map((b) => alphabet[b]).join("");
  const pairs: [number[], number[]][] = [
    [[0x20], [0x74]], // " t"
    [[0x68], [0x65]], // "he"
    [
      [0x20, 0x74],
      [0x68, 0x65],
    ], // " the"
    [[0xf0], [0x9f]], // 😀 = F0 9F 98 80
    [[0xf0, 0x9f], [0x98]],
    [[0xc3], [0xa9]], // é
  ];
  const vocab: Record<string, number> = {};
  alphabet.forEach((c, id) => {
    vocab[c] = id;
  });
  for (const [a, b] of pairs) vocab[chars([...a, ...b])] = Object.keys(vocab).length;
  const numVocab = Object.keys(vocab).length;
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    added_tokens: [
      {
        id: numVocab,
        content: "<|endoftext|>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", ...byteLevel },
    post_processor: null,
    decoder: { type: "ByteLevel", ...byteLevel },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: pairs.map(([a, b]) => [chars(a), chars(b)]),
    },
  };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Pushes `ids` in chunks of the given sizes (the rest in a last chunk), then flushes, and
 * checks the stream against a one-shot decode. */
function checkStream(
  tok: Tokenizer,
  ids: readonly number[],
  chunkLens: readonly number[],
  isSkipping: boolean,
): void {
  const full = tok.decode(ids, { skipSpecialTokens: isSkipping });
  const detok = tok.createDetokenizer({ skipSpecialTokens: isSkipping });
  const pieces: string[] = [];
  let start = 0;
  for (const len of [...chunkLens, ids.length]) {
    const piece = detok.push(ids.slice(start, start + len));
    start += len;
    pieces.push(piece);
    // Returned text is final: it never ends inside a character and is never revised.
    expect(piece).not.toMatch(LONE_SURROGATE);
    expect(piece.endsWith("\uFFFD")).toBe(false);
    expect(full.startsWith(detok.text)).toBe(true);
  }
  pieces.push(detok.flush());
  expect(pieces.join("")).toBe(full);
  expect(detok.text).toBe(full);
}

/** Byte-fallback ids (<0xNN> is id NN + 3 in both Llama vocabularies) for random text. */
const utf8ByteIds = fc
  .string({ unit: "grapheme", maxLength: 3 })
  .map((s) => [...new TextEncoder().encode(s)].map((b) => b + 3));

/** Ids a Llama-family sentencepiece model can produce: specials, raw bytes (valid or not),
 * whole characters as bytes, ordinary pieces, and ids past the vocabulary. */
function llamaIds(vocabSize: number): fc.Arbitrary<number[]> {
  const oneOrMore = fc.oneof(
    fc.integer({ min: 0, max: 2 }).map((id) => [id]),
    fc.integer({ min: 3, max: 258 }).map((id) => [id]),
    utf8ByteIds,
    fc.integer({ min: 259, max: vocabSize - 1 }).map((id) => [id]),
    // Out of the vocabulary (a padded embedding row): skipped by decode.
    fc.integer({ min: vocabSize, max: vocabSize + 2 }).map((id) => [id]),
  );
  return fc.array(oneOrMore, { maxLength: 24 }).map((groups) => groups.flat());
}

const chunkLens = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 12 });

describe.each([
  ["stories260K", () => stories],
  ["Llama-2", () => llama2],
])("%s streaming detokenizer", (_name, getTok) => {
  it("streams exactly what a one-shot decode gives, in any chunking", () => {
    const tok = getTok();
    fc.assert(
      fc.property(llamaIds(tok.vocabSize), chunkLens, fc.boolean(), (ids, lens, isSkipping) => {
        checkStream(tok, ids, lens, isSkipping);
      }),
      { numRuns: 400 },
    );
  });

  it("continues a prompt as the one-shot decode of prompt + generation does", () => {
    const tok = getTok();
    const ids = llamaIds(tok.vocabSize);
    fc.assert(
      fc.property(ids, ids, chunkLens, fc.boolean(), (prefix, generated, lens, isSkipping) => {
        const opts = { skipSpecialTokens: isSkipping };
        // What streaming the prompt itself would have returned before generation started.
        const promptText = tok.createDetokenizer(opts).push(prefix);
        const detok = tok.createDetokenizer({ ...opts, prefixIds: prefix });
        let start = 0;
        let text = "";
        for (const len of [...lens, generated.length]) {
          text += detok.push(generated.slice(start, start + len));
          start += len;
        }
        text += detok.flush();
        expect(promptText + text).toBe(tok.decode([...prefix, ...generated], opts));
      }),
      { numRuns: 200 },
    );
  });
});

describe("byte-level (Llama-3 style) streaming detokenizer", () => {
  it("streams exactly what a one-shot decode gives, in any chunking", () => {
    const ids = fc.array(fc.integer({ min: 0, max: byteLevel.vocabSize - 1 }), { maxLength: 24 });
    fc.assert(
      fc.property(ids, chunkLens, fc.boolean(), (ids, lens, isSkipping) => {
        checkStream(byteLevel, ids, lens, isSkipping);
      }),
      { numRuns: 400 },
    );
  });

  it("holds a character split across tokens until it is complete", async () => {
    const ids = await byteLevel.encode("😀 the é");
    expect(ids.length).toBeGreaterThan(4);
    const detok = byteLevel.createDetokenizer();
    const pieces = ids.map((id) => detok.push([id]));
    expect(pieces.join("") + detok.flush()).toBe("😀 the é");
    expect(pieces[0]).toBe("");
  });
});

describe("detokenizer behaviour", () => {
  it("holds byte-fallback bytes until the character is complete", () => {
    const detok = llama2.createDetokenizer();
    // "▁" then 😀 as <0xF0> <0x9F> <0x98> <0x80>, then "!".
    const pieces = [29871, 243, 162, 155, 131, 29991].map((id) => detok.push([id]));
    // A standalone decode strips the space of the leading "▁".
    expect(pieces).toEqual(["", "", "", "", "😀", "!"]);
  });

  it("strips the first token's leading space only without a prefix", () => {
    const standalone = llama2.createDetokenizer();
    expect([standalone.push([15043]), standalone.push([3186])]).toEqual(["Hello", " world"]);
    const afterPrompt = llama2.createDetokenizer({ prefixIds: [1, 450] });
    expect([afterPrompt.push([15043]), afterPrompt.push([3186])]).toEqual([" Hello", " world"]);
    expect(afterPrompt.text).toBe(" Hello world");
    // A lone "▁" loses its space to the strip; the next token keeps its own.
    const spaceFirst = llama2.createDetokenizer();
    expect([spaceFirst.push([29871]), spaceFirst.push([15043])]).toEqual(["", " Hello"]);
  });

  it("renders an incomplete character at flush as decode does", () => {
    const detok = llama2.createDetokenizer();
    expect(detok.push([15043, 243, 162])).toBe("Hello");
    expect(detok.flush()).toBe("\uFFFD");
    expect(detok.text).toBe(llama2.decode([15043, 243, 162]));
    expect(detok.flush()).toBe("");
  });

  it("skips special tokens only when asked", () => {
    const ids = [1, 15043, 2, 3186];
    const skipping = llama2.createDetokenizer({ skipSpecialTokens: true });
    expect(skipping.push(ids) + skipping.flush()).toBe("Hello world");
    const keeping = llama2.createDetokenizer();
    expect(keeping.push(ids) + keeping.flush()).toBe("<s> Hello</s> world");
  });

  it("refuses ids after flush", () => {
    const detok = stories.createDetokenizer();
    detok.flush();
    expect(() => detok.push([261])).toThrow(/after flush/);
  });
});
