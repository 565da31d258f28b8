import { describe, expect, it } from "vitest";
import { parseWorkerOptions } from "../src/options";

describe("--weight-dtype / KILN_WEIGHT_DTYPE", () => {
  it("defaults to f32; the flag wins over the environment variable", () => {
    expect(parseWorkerOptions(["--model", "m"], {}).weightDtype).toBe("f32");
    expect(parseWorkerOptions(["--model", "m"], { KILN_WEIGHT_DTYPE: "int8" }).weightDtype).toBe(
      "int8",
    );
    const both = parseWorkerOptions(["--model", "m", "--weight-dtype", "bf16"], {
      KILN_WEIGHT_DTYPE: "int8",
    });
    expect(both.weightDtype).toBe("bf16");
  });

  it("rejects an unknown dtype with the choices", () => {
    expect(() => parseWorkerOptions(["--model", "m", "--weight-dtype", "q4"], {})).toThrow(
      /f32, bf16, int8/,
    );
  });
});

describe("--activation-dtype / KILN_ACTIVATION_DTYPE", () => {
  const parse = (args: string[], env: Record<string, string> = {}) =>
    parseWorkerOptions(["--model", "m", ...args], env).activationDtype;

  it("auto (the default) is bf16 for bf16 and int8 weights, f32 for f32 weights", () => {
    expect(parse([])).toBe("f32");
    expect(parse(["--weight-dtype", "int8"])).toBe("bf16");
    expect(parse(["--weight-dtype", "bf16"])).toBe("bf16");
    expect(parse(["--weight-dtype", "bf16", "--activation-dtype", "auto"])).toBe("bf16");
  });

  it("takes the environment variable; the flag wins over it", () => {
    expect(parse(["--weight-dtype", "int8"], { KILN_ACTIVATION_DTYPE: "f32" })).toBe("f32");
    expect(parse(["--activation-dtype", "f32"], { KILN_ACTIVATION_DTYPE: "bf16" })).toBe("f32");
    expect(() => parse(["--activation-dtype", "fp8"])).toThrow(/auto, f32, bf16/);
  });
});
