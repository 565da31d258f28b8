import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeRandomModel } from "@kiln/model";
import { STORIES_DIR } from "@kiln/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { resolveDraftModelDir } from "./draft-model";

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const envWith = (config: Record<string, unknown>) => ({
  KILN_SPECULATIVE_CONFIG: JSON.stringify(config),
});

describe("resolveDraftModelDir", () => {
  it("is null without draft_model speculation", async () => {
    expect(await resolveDraftModelDir({}, "/", STORIES_DIR)).toBeNull();
    const ngram = envWith({ method: "ngram", num_speculative_tokens: 2 });
    expect(await resolveDraftModelDir(ngram, "/", STORIES_DIR)).toBeNull();
  });

  it("resolves a directory relative to where npm ran", async () => {
    const env = envWith({ method: "draft_model", model: "stories260K", num_speculative_tokens: 2 });
    expect(await resolveDraftModelDir(env, join(STORIES_DIR, ".."), STORIES_DIR)).toBe(STORIES_DIR);
  });

  it("refuses a draft model with another vocabulary, naming both sizes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kiln-draft-"));
    dirs.push(dir);
    await writeRandomModel(dir, "tiny", { seed: 1, tokenizerDir: null }); // vocabulary 32000
    const env = envWith({ method: "draft_model", model: dir, num_speculative_tokens: 2 });
    await expect(resolveDraftModelDir(env, "/", STORIES_DIR)).rejects.toThrow(
      /draft model's vocabulary \(32000 tokens.*differs from the target's \(512 tokens/,
    );
  });

  it("refuses a model that is neither a directory nor a repo id, and a bad config", async () => {
    const env = envWith({ method: "draft_model", model: "./nowhere", num_speculative_tokens: 2 });
    await expect(resolveDraftModelDir(env, "/", STORIES_DIR)).rejects.toThrow(/nowhere/);
    await expect(
      resolveDraftModelDir({ KILN_SPECULATIVE_CONFIG: "{" }, "/", STORIES_DIR),
    ).rejects.toThrow(/not JSON/);
  });
});
