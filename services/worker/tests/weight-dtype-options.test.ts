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
