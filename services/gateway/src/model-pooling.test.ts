import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { modelPooling } from "./model-pooling";

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function modelDir(files: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-pooling-"));
  dirs.push(dir);
  for (const [path, json] of Object.entries(files)) {
    await mkdir(join(dir, path, ".."), { recursive: true });
    await writeFile(join(dir, path), JSON.stringify(json));
  }
  return dir;
}

describe("modelPooling", () => {
  it("reads the sentence-transformers Pooling module named in modules.json", async () => {
    const dir = await modelDir({
      "modules.json": [
        { path: "", type: "x.Transformer" },
        { path: "2_Pool", type: "sentence_transformers.models.Pooling" },
      ],
      "2_Pool/config.json": { pooling_mode_mean_tokens: true },
    });
    expect(await modelPooling(dir)).toBe("mean");
  });

  it("falls back to 1_Pooling, and to null without a config", async () => {
    const last = await modelDir({ "1_Pooling/config.json": { pooling_mode_lasttoken: true } });
    expect(await modelPooling(last)).toBe("last");
    expect(await modelPooling(await modelDir({}))).toBeNull();
  });
});
