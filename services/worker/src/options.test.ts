import { describe, expect, it } from "vitest";
import { parseWorkerOptions } from "./options";

describe("--sampling / KILN_SAMPLING", () => {
  const base = ["--model", "/m"];

  it("is unset by default (the backend picks native when the addon loads)", () => {
    expect(parseWorkerOptions(base, {}).sampling).toBeUndefined();
  });

  it("takes the flag over the environment", () => {
    expect(parseWorkerOptions(base, { KILN_SAMPLING: "typescript" }).sampling).toBe("typescript");
    const both = parseWorkerOptions([...base, "--sampling", "native"], {
      KILN_SAMPLING: "typescript",
    });
    expect(both.sampling).toBe("native");
  });

  it("rejects anything else, naming the flag", () => {
    expect(() => parseWorkerOptions([...base, "--sampling", "fast"], {})).toThrow(
      '--sampling: expected native or typescript, got "fast"',
    );
  });
});
