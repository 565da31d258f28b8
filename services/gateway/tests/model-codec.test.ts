import { loadTokenizer } from "@kiln/model";
import { loadGolden, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { createModelCodec } from "../src/model-codec";
import type { TextCodec } from "../src/text-codec";

const MODEL_DIR = STORIES_DIR;
const GOLDEN = loadGolden();

let codec: TextCodec;
beforeAll(async () => {
  codec = createModelCodec(await loadTokenizer(MODEL_DIR));
});

describe("createModelCodec (stories260K)", () => {
  it("encodes golden prompts with BOS and detokenizes greedy ids to greedy_text", async () => {
    for (const c of GOLDEN.cases) {
      expect(await codec.encodePrompt(c.prompt)).toEqual(c.prompt_ids);
      const detok = codec.createDetokenizer();
      const text = c.greedy_ids.map((id) => detok.push([id])).join("") + detok.flush();
      expect(text).toBe(c.greedy_text);
    }
  });

  it("gives token pieces with their leading space, and bytes", () => {
    const [id] = GOLDEN.cases[0]!.greedy_ids.slice(1, 2); // "▁there"
    expect(codec.tokenPiece(id!)).toEqual({ text: " there", bytes: [...Buffer.from(" there")] });
    // <0x0A> is a byte-fallback piece that is one whole character.
    expect(codec.tokenPiece(13)).toEqual({ text: "\n", bytes: [10] });
    // A lone UTF-8 lead byte is not text: OpenAI's `bytes:` form.
    expect(codec.tokenPiece(3 + 0xe2)).toEqual({ text: "bytes:\\xe2", bytes: [0xe2] });
  });

  it("renders the chat template once, with a single BOS", async () => {
    const ids = await codec.encodeChat([{ role: "user", content: "Hi" }]);
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(codec.decode(ids)).toBe("User: Hi\nAssistant:");
  });
});
