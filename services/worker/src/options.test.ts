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

describe("--kv-cache-dtype / KILN_KV_CACHE_DTYPE", () => {
  const base = ["--model", "/m"];

  it("is f32 by default; the flag wins over the environment", () => {
    expect(parseWorkerOptions(base, {}).kvCacheDtype).toBe("f32");
    expect(parseWorkerOptions(base, { KILN_KV_CACHE_DTYPE: "bf16" }).kvCacheDtype).toBe("bf16");
    const both = parseWorkerOptions([...base, "--kv-cache-dtype", "f32"], {
      KILN_KV_CACHE_DTYPE: "bf16",
    });
    expect(both.kvCacheDtype).toBe("f32");
  });

  it("rejects anything else, naming the choices", () => {
    expect(() => parseWorkerOptions([...base, "--kv-cache-dtype", "fp8"], {})).toThrow(
      'bad KV cache dtype "fp8": expected one of f32, bf16',
    );
  });
});

describe("--huge-pages / KILN_HUGE_PAGES", () => {
  const base = ["--model", "/m"];

  it("is on by default; the flag wins over the environment", () => {
    expect(parseWorkerOptions(base, {}).hugePages).toBe(true);
    expect(parseWorkerOptions(base, { KILN_HUGE_PAGES: "off" }).hugePages).toBe(false);
    const both = parseWorkerOptions([...base, "--huge-pages", "on"], { KILN_HUGE_PAGES: "off" });
    expect(both.hugePages).toBe(true);
  });

  it("rejects anything else, naming the flag", () => {
    expect(() => parseWorkerOptions([...base, "--huge-pages", "always"], {})).toThrow(
      '--huge-pages: expected on or off, got "always"',
    );
  });
});

describe("--grammar-threads / KILN_GRAMMAR_THREADS", () => {
  const base = ["--model", "/m"];

  it("is 2 by default; the flag wins over the environment; 0 is refused", () => {
    expect(parseWorkerOptions(base, {}).grammarThreads).toBe(2);
    expect(parseWorkerOptions(base, { KILN_GRAMMAR_THREADS: "3" }).grammarThreads).toBe(3);
    const both = parseWorkerOptions([...base, "--grammar-threads", "1"], {
      KILN_GRAMMAR_THREADS: "3",
    });
    expect(both.grammarThreads).toBe(1);
    expect(() => parseWorkerOptions([...base, "--grammar-threads", "0"], {})).toThrow(
      /--grammar-threads/,
    );
  });
});

describe("--omp-spincount / KILN_OMP_SPINCOUNT", () => {
  const base = ["--model", "/m"];

  it("is unset by default; the flag wins over the environment", () => {
    expect(parseWorkerOptions(base, {}).ompSpinCount).toBeNull();
    expect(parseWorkerOptions(base, { KILN_OMP_SPINCOUNT: "100000" }).ompSpinCount).toBe(100000);
    const both = parseWorkerOptions([...base, "--omp-spincount", "0"], {
      KILN_OMP_SPINCOUNT: "100000",
    });
    expect(both.ompSpinCount).toBe(0);
  });

  it("rejects anything but a non-negative integer, naming the flag", () => {
    for (const bad of ["-1", "1.5", "active"]) {
      expect(() => parseWorkerOptions([...base, `--omp-spincount=${bad}`], {})).toThrow(
        "--omp-spincount: expected an integer ≥ 0",
      );
    }
  });
});
