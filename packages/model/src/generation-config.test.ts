import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { makeTmpDir } from "../tests/helpers";
import { loadGenerationConfig, parseGenerationConfig } from "./generation-config";

describe("generation config", () => {
  it("maps every field to camelCase", () => {
    expect(
      parseGenerationConfig({
        temperature: 0.6,
        top_p: 0.9,
        top_k: 40,
        repetition_penalty: 1.1,
        max_new_tokens: 256,
        do_sample: true,
        bos_token_id: 1,
        eos_token_id: [2, 32000],
        pad_token_id: 0,
        transformers_version: "4.44.0",
      }),
    ).toEqual({
      temperature: 0.6,
      topP: 0.9,
      topK: 40,
      repetitionPenalty: 1.1,
      maxNewTokens: 256,
      doSample: true,
      bosTokenId: 1,
      eosTokenIds: [2, 32000],
    });
  });

  it("omits absent and null fields and wraps a single eos id", () => {
    expect(parseGenerationConfig({ eos_token_id: 2, temperature: null })).toEqual({
      eosTokenIds: [2],
    });
  });

  it("names an invalid field", () => {
    expect(() => parseGenerationConfig({ top_p: 2 })).toThrow(/generation_config\.json: top_p/);
  });

  it("loads stories260K and treats a missing file as empty", async () => {
    expect(await loadGenerationConfig(STORIES_DIR)).toEqual({ bosTokenId: 1, eosTokenIds: [2] });
    const { dir, cleanup } = await makeTmpDir();
    try {
      expect(await loadGenerationConfig(dir)).toEqual({});
      await writeFile(join(dir, "generation_config.json"), "{");
      await expect(loadGenerationConfig(dir)).rejects.toMatchObject({ code: "INVALID_CONFIG" });
    } finally {
      await cleanup();
    }
  });
});
