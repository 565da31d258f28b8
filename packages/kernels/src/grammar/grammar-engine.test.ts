import { STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING } from "../backend";
import { sampleRow } from "../sampling/sample-row";
import { GrammarCompileError, GrammarEngine, type SequenceGrammar } from "./grammar-engine";
import type { GrammarSpec } from "./grammar-spec";
import { loadGrammarVocab } from "./grammar-vocab";

const EOS = 2;
let engine: GrammarEngine;
let vocab: readonly string[];

beforeAll(async () => {
  const v = await loadGrammarVocab(STORIES_DIR, 512, [EOS]);
  vocab = v.encodedVocab;
  engine = await GrammarEngine.create(v, { maxWhitespace: 1, cacheSize: 4 });
});

function isAllowed(mask: Int32Array, id: number): boolean {
  return ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
}

/** Samples greedily from uniform-random logits under the grammar until the stop token. */
async function runToEnd(grammar: SequenceGrammar, seed: number): Promise<string> {
  let text = "";
  for (let i = 0; i < 400; i++) {
    const mask = await grammar.nextTokenBitmask();
    const logits = new Float32Array(512).map((_, id) => Math.sin(id * 12.9898 + seed * 78.233 + i));
    const { tokenId } = sampleRow(logits, {
      params: DEFAULT_SAMPLING,
      outputIndex: i,
      promptTokenIds: [],
      outputTokenIds: [],
      allowedTokenBitmask: mask,
    });
    expect(grammar.accept(tokenId)).toBe(true);
    if (tokenId === EOS) return text;
    const piece = vocab[tokenId]!;
    const byte = /^<0x([0-9A-F]{2})>$/.exec(piece);
    text += byte ? String.fromCharCode(Number.parseInt(byte[1]!, 16)) : piece.replaceAll("▁", " ");
  }
  throw new Error(`no stop token after 400 tokens: ${text}`);
}

describe("GrammarEngine on stories260K's vocabulary", () => {
  const schema: GrammarSpec = {
    kind: "json_schema",
    strict: true,
    text: JSON.stringify({
      type: "object",
      properties: { a: { type: "integer", minimum: 0, maximum: 99 }, b: { enum: ["x", "y"] } },
      required: ["a", "b"],
      additionalProperties: false,
    }),
  };

  it("masks the sampler so that unconstrained-looking logits give schema-valid JSON", async () => {
    for (let seed = 0; seed < 5; seed++) {
      const text = await runToEnd(await engine.createMatcher(schema), seed);
      const value = JSON.parse(text) as { a: number; b: string };
      expect(Object.keys(value)).toEqual(["a", "b"]);
      expect(value.a).toBeGreaterThanOrEqual(0);
      expect(value.a).toBeLessThanOrEqual(99);
      expect(["x", "y"]).toContain(value.b);
    }
  });

  it("allows the stop token only once the grammar is complete", async () => {
    const grammar = await engine.createMatcher({ kind: "regex", strict: true, text: "ab" });
    expect(isAllowed(await grammar.nextTokenBitmask(), EOS)).toBe(false);
    for (const ch of ["a", "b"]) expect(grammar.accept(vocab.indexOf(ch))).toBe(true);
    const mask = await grammar.nextTokenBitmask();
    expect(isAllowed(mask, EOS)).toBe(true);
    expect(isAllowed(mask, vocab.indexOf("a"))).toBe(false);
  });

  it("rolls back accepted tokens (the speculative-decoding hook)", async () => {
    const grammar = await engine.createMatcher({ kind: "regex", strict: true, text: "ab|cd" });
    expect(grammar.accept(vocab.indexOf("a"))).toBe(true);
    expect(grammar.accept(vocab.indexOf("d"))).toBe(false);
    grammar.rollback(1);
    expect(grammar.accept(vocab.indexOf("c"))).toBe(true);
    expect(grammar.accept(vocab.indexOf("d"))).toBe(true);
  });

  it("caches compiled grammars by spec and reports a bad grammar as GrammarCompileError", async () => {
    const before = engine.compileCount;
    await engine.createMatcher(schema);
    expect(engine.compileCount).toBe(before);
    await expect(
      engine.compile({ kind: "ebnf", strict: true, text: "root ::= (" }),
    ).rejects.toThrow(GrammarCompileError);
  });
});
describe("after a compile error", () => {
  it("still compiles", async () => {
    await expect(engine.compile({ kind: "regex", strict: true, text: "(" })).rejects.toThrow();
    const g = await engine.createMatcher({ kind: "regex", strict: true, text: "xy" });
    expect(g.accept(vocab.indexOf("x"))).toBe(true);
  });
});

describe("bounded whitespace", () => {
  it("json_object allows at most maxWhitespace whitespace characters in a row", async () => {
    const newline = vocab.indexOf("<0x0A>");
    for (const prefix of ['{"a":1', '{"a":[1']) {
      const grammar = await engine.createMatcher({ kind: "json_object", strict: true, text: "" });
      expect(
        (
          grammar as unknown as { matcher: { _acceptString(s: string): boolean } }
        ).matcher._acceptString(prefix),
      ).toBe(true);
      expect(grammar.accept(newline)).toBe(true);
      expect(grammar.accept(newline)).toBe(false);
    }
  });
});
