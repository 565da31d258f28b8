import { readFileSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LLAMA2_TOKENIZER_DIR, loadGolden, MODELS_DIR, STORIES_DIR } from "@kiln/test-support";
import fc from "fast-check";
import { Tokenizer as NativeTokenizer } from "tokenizers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelError } from "../src/errors";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer";

const STORIES = STORIES_DIR;
const LLAMA2 = LLAMA2_TOKENIZER_DIR;
const golden = loadGolden();

let stories: Tokenizer;
let llama2: Tokenizer;
const tmpDirs: string[] = [];

beforeAll(async () => {
  [stories, llama2] = await Promise.all([loadTokenizer(STORIES), loadTokenizer(LLAMA2)]);
});

afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A copy of stories260K's tokenizer files with tokenizer.json / tokenizer_config.json
 * edited by `edit` (null removes the file). */
async function storiesVariant(edit: {
  tokenizer?: (json: Record<string, unknown>) => Record<string, unknown>;
  config?: ((json: Record<string, unknown>) => Record<string, unknown>) | null;
}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-tok-"));
  tmpDirs.push(dir);
  const tokenizer = JSON.parse(readFileSync(join(STORIES, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(join(STORIES, "tokenizer_config.json"), "utf8"));
  const editTokenizer = edit.tokenizer ?? ((j) => j);
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(editTokenizer(tokenizer)));
  if (edit.config !== null) {
    const editConfig = edit.config ?? ((j) => j);
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(editConfig(config)));
  }
  return dir;
}

describe("stories260K golden", () => {
  it.each(golden.cases)("encodes $prompt to its prompt_ids", async (c) => {
    expect(await stories.encode(c.prompt)).toEqual(c.prompt_ids);
  });

  it.each(golden.cases)("decodes the greedy ids of $prompt", (c) => {
    // A standalone decode strips the first token's leading space; the golden text may keep it.
    expect(stories.decode(c.greedy_ids)).toBe(c.greedy_text.replace(/^ /, ""));
  });

  it.each(golden.cases)("streams the greedy ids of $prompt after its prompt", (c) => {
    const detok = stories.createDetokenizer({ prefixIds: c.prompt_ids, skipSpecialTokens: true });
    const text = c.greedy_ids.map((id) => detok.push([id])).join("") + detok.flush();
    const full = stories.decode([...c.prompt_ids, ...c.greedy_ids], { skipSpecialTokens: true });
    expect(full).toBe(c.prompt + text);
    expect(text.trimStart()).toBe(c.greedy_text.trimStart());
  });
});

describe("Llama-2 tokenizer", () => {
  // Ids from the Rust `tokenizers` crate (the implementation transformers uses).
  it.each([
    ["Hello world", [1, 15043, 3186]],
    [" Hello", [1, 29871, 15043]],
    ["  two spaces", [1, 259, 1023, 8162]],
    ["line one\nline two\n", [1, 1196, 697, 13, 1220, 1023, 13]],
    ["\n\n", [1, 29871, 13, 13]],
    ["héllo ünïcode", [1, 298, 3610, 417, 2505, 29876, 30085, 401]],
    ["日本語", [1, 29871, 30325, 30346, 30968]],
    ["emoji 😀!", [1, 953, 29877, 2397, 29871, 243, 162, 155, 131, 29991]],
    ["<s>Hi</s>", [1, 1, 6324, 2]],
    ["tab\tx", [1, 4434, 12, 29916]],
  ])("encodes %j", async (text, ids) => {
    expect(await llama2.encode(text)).toEqual(ids);
    expect(llama2.decode(ids, { skipSpecialTokens: true })).toBe(text.replace(/<\/?s>/g, ""));
  });

  it("exposes its special tokens and vocabulary", () => {
    expect(llama2.vocabSize).toBe(32000);
    expect([llama2.bosTokenId, llama2.eosTokenIds]).toEqual([1, [2]]);
    expect([llama2.bosToken, llama2.eosToken]).toEqual(["<s>", "</s>"]);
    expect([llama2.addBosToken, llama2.addEosToken]).toEqual([true, false]);
    expect([0, 1, 2, 3, 15043].map((id) => llama2.isSpecial(id))).toEqual([
      true,
      true,
      true,
      false,
      false,
    ]);
    expect(llama2.idToPiece(15043)).toBe("▁Hello");
    expect(llama2.idToPiece(13)).toBe("<0x0A>");
    expect([llama2.idToPiece(32000), llama2.idToPiece(-1), llama2.idToPiece(1.5)]).toEqual([
      null,
      null,
      null,
    ]);
    expect([llama2.pieceToId("▁Hello"), llama2.pieceToId("no such piece")]).toEqual([15043, null]);
  });

  it("decodes special tokens unless told to skip them, and strips one leading space", () => {
    expect(llama2.decode([1, 15043, 3186, 2])).toBe("<s> Hello world</s>");
    expect(llama2.decode([1, 15043, 3186, 2], { skipSpecialTokens: true })).toBe("Hello world");
    expect(llama2.decode([29871, 15043])).toBe(" Hello");
    expect(llama2.decode([])).toBe("");
    // Unknown ids are skipped, as the Rust crate does.
    expect(llama2.decode([15043, 32000, -1, 3186])).toBe("Hello world");
  });

  it("replaces invalid or incomplete UTF-8 bytes with U+FFFD, as TextDecoder does", () => {
    // <0x26> "&" then a lone <0xE0>: the complete character survives.
    expect(llama2.decode([41, 227])).toBe("&\uFFFD");
    // The first three bytes of 😀 (F0 9F 98) then a regular token.
    expect(llama2.decode([243, 162, 155, 3186])).toBe("\uFFFD world");
  });

  it("adds no BOS with addSpecialTokens false", async () => {
    expect(await llama2.encode("Hello world", { addSpecialTokens: false })).toEqual([15043, 3186]);
  });

  it("encodes concurrently without mixing results", async () => {
    const texts = ["a", "Hello world", "emoji 😀!", "x".repeat(1000)];
    const all = await Promise.all(texts.map((t) => llama2.encode(t)));
    expect(all.map((ids) => llama2.decode(ids, { skipSpecialTokens: true }))).toEqual(texts);
  });
});

describe("parity with the Rust tokenizers crate", () => {
  // Valid UTF-8 only: on invalid byte runs Kiln follows TextDecoder (see ADR 0004).
  const textIds = (vocabSize: number) =>
    fc
      .array(
        fc.oneof(
          fc.integer({ min: 0, max: 2 }).map((id) => [id]),
          fc.integer({ min: 259, max: vocabSize - 1 }).map((id) => [id]),
          fc
            .string({ unit: "grapheme", minLength: 1, maxLength: 2 })
            .map((s) => [...new TextEncoder().encode(s)].map((b) => b + 3)),
        ),
        { maxLength: 16 },
      )
      .map((groups) => groups.flat());

  it.each([
    ["stories260K", STORIES],
    ["Llama-2", LLAMA2],
  ])("decodes valid text as the crate does (%s)", async (name, dir) => {
    const tok = name === "Llama-2" ? llama2 : stories;
    const native = NativeTokenizer.fromFile(join(dir, "tokenizer.json"));
    await fc.assert(
      fc.asyncProperty(textIds(tok.vocabSize), fc.boolean(), async (ids, isSkipping) => {
        const expected = await native.decode(ids, isSkipping);
        expect(tok.decode(ids, { skipSpecialTokens: isSkipping })).toBe(expected);
      }),
      { numRuns: 200 },
    );
  });
});

describe("add_bos_token / add_eos_token", () => {
  const removePostProcessor = (j: Record<string, unknown>) => ({ ...j, post_processor: null });

  it("adds BOS from the config when tokenizer.json has no post-processor", async () => {
    const tok = await loadTokenizer(await storiesVariant({ tokenizer: removePostProcessor }));
    expect(await tok.encode("Once upon a time")).toEqual(golden.cases[0]?.prompt_ids);
    expect(tok.addBosToken).toBe(true);
  });

  it("adds no BOS when the config says so, despite the post-processor", async () => {
    const dir = await storiesVariant({ config: (c) => ({ ...c, add_bos_token: false }) });
    const tok = await loadTokenizer(dir);
    expect(await tok.encode("Once upon a time")).toEqual([403, 407, 261, 378]);
    expect(tok.addBosToken).toBe(false);
  });

  it("adds EOS when add_eos_token is set, with one BOS", async () => {
    const dir = await storiesVariant({ config: (c) => ({ ...c, add_eos_token: true }) });
    const tok = await loadTokenizer(dir);
    expect(await tok.encode("Once upon a time")).toEqual([1, 403, 407, 261, 378, 2]);
    expect(await tok.encode("Once", { addSpecialTokens: false })).toEqual([403]);
  });

  it("follows the post-processor when there is no tokenizer_config.json", async () => {
    const tok = await loadTokenizer(await storiesVariant({ config: null }));
    expect(await tok.encode("Once upon a time")).toEqual(golden.cases[0]?.prompt_ids);
    expect([tok.bosTokenId, tok.eosTokenIds, tok.chatTemplate]).toEqual([null, [], null]);
  });

  it("reads special tokens written as AddedToken objects", async () => {
    const added = (content: string) => ({ __type: "AddedToken", content, special: true });
    const dir = await storiesVariant({
      config: (c) => ({ ...c, bos_token: added("<s>"), eos_token: added("</s>") }),
    });
    const tok = await loadTokenizer(dir);
    expect([tok.bosTokenId, tok.eosTokenIds]).toEqual([1, [2]]);
  });
});

describe("loadTokenizer errors", () => {
  it("is NOT_FOUND without tokenizer.json", async () => {
    const err = await loadTokenizer(join(MODELS_DIR, "no-such-model")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe("NOT_FOUND");
  });

  it.each([
    ["a mistyped field", (c: Record<string, unknown>) => ({ ...c, add_bos_token: "yes" })],
    ["an unknown bos_token", (c: Record<string, unknown>) => ({ ...c, bos_token: "<bos>" })],
  ])("is INVALID_CONFIG for %s", async (_what, config) => {
    const err = await loadTokenizer(await storiesVariant({ config })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe("INVALID_CONFIG");
  });

  it("is INVALID_CONFIG for a tokenizer.json that is not a tokenizer", async () => {
    const dir = await storiesVariant({});
    await writeFile(join(dir, "tokenizer.json"), "{}");
    const err = await loadTokenizer(dir).catch((e: unknown) => e);
    expect((err as ModelError).code).toBe("INVALID_CONFIG");
  });

  it("reads special_tokens_map.json for tokens the config leaves out", async () => {
    const dir = await storiesVariant({
      config: ({ bos_token: _b, eos_token: _e, ...rest }) => rest,
    });
    await copyFile(join(LLAMA2, "special_tokens_map.json"), join(dir, "special_tokens_map.json"));
    const tok = await loadTokenizer(dir);
    expect([tok.bosTokenId, tok.eosTokenIds]).toEqual([1, [2]]);
  });
});
