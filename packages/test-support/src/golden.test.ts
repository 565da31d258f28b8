import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LORA_A_GOLDEN_PATH, loadGolden, loadGoldenCases } from "./index";

describe("loadGolden", () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-golden-"));
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it("reads the shared goldens", () => {
    expect(loadGoldenCases().length).toBeGreaterThan(0);
    expect(loadGolden(LORA_A_GOLDEN_PATH).adapter).toBe("stories260K-lora-a");
  });

  it.each([
    ["an empty file", "", /is empty/],
    ["no cases", '{"model":"m","cases":[]}', /no cases/],
    [
      "a case without greedy ids",
      '{"model":"m","cases":[{"prompt":"a","prompt_ids":[1],"greedy_ids":[],"greedy_text":""}]}',
      /case 0 is malformed/,
    ],
  ])("rejects %s", (_name, text, message) => {
    expect(() => loadGolden(write(`${_name}.json`, text))).toThrow(message);
  });
});
