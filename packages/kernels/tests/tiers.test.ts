import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isCi, loadGoldenCases, requireAvailable } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { loadTierAddonFrom } from "../src/cpu/tier-addon";

// Every tier that must run without oneDNN (ADR 0022) reproduces the stories260K golden ids, in a
// child process where oneDNN cannot load (KILN_DISABLE_ONEDNN=1 stops its dlopen), checked by
// the child's own memory map. The native tier runs each ISA the CPU has (KILN_NATIVE_ISA); the
// WebAssembly SIMD tier (ADR 0026) runs forced, and as auto's choice without a native tier.

const CHILD = fileURLToPath(new URL("./helpers/tier-golden-child.ts", import.meta.url));
const expected = loadGoldenCases().map((c) => c.greedy_ids);

function runChild(tiers: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const out = execFileSync(process.execPath, ["--import", "tsx", CHILD, ...tiers], {
    env: { ...process.env, KILN_DISABLE_ONEDNN: "1", KILN_KERNEL_TIER: "", ...env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 80_000,
  });
  return JSON.parse(out.trim().split("\n").at(-1)!) as {
    results: Record<string, { tier: string; kernels: string; ids: number[][] }>;
    isOnednnMapped: boolean;
    isTierAddonMapped: boolean;
  };
}

const hasSource = typeof loadTierAddonFrom("source") !== "string";
const hasPrebuilt = typeof loadTierAddonFrom("prebuilt") !== "string";

describe("kernel tiers without oneDNN reproduce the golden ids", () => {
  it("source build, prebuilt, auto, wasm and TypeScript", { timeout: 90_000 }, () => {
    requireAvailable("the kiln_tier source build", hasSource, "npm run build -w @kiln/kernels");
    if (process.arch === "x64" && process.platform === "linux") {
      expect(hasPrebuilt, "prebuilds/linux-x64/kiln_tier.node is committed").toBe(true);
    }
    const tiers = ["auto", "native-prebuilt", "wasm", "typescript"];
    if (hasSource || isCi()) tiers.push("native-source");
    const { results, isOnednnMapped } = runChild(tiers);
    expect(isOnednnMapped).toBe(false);
    expect(results.typescript!.tier).toBe("typescript/typescript");
    expect(results.wasm!.tier).toBe("wasm-simd/wasm");
    // kiln_tier brings attention, row kernels and sampling (ADR 0026), without oneDNN.
    expect(results["native-prebuilt"]!.kernels).toBe("native/native");
    expect(results.wasm!.kernels).toBe("simd/typescript");
    expect(results["native-prebuilt"]!.tier).toMatch(/^native-avx(512|2)\/prebuilt$/);
    // auto without oneDNN: the source build when there is one, else the prebuilt.
    expect(results.auto!.tier).toMatch(hasSource ? /\/source$/ : /\/prebuilt$/);
    if (hasSource) expect(results["native-source"]!.tier).toMatch(/^native-.*\/source$/);
    for (const [setting, r] of Object.entries(results)) {
      expect(r.ids, `${setting} (${r.tier})`).toEqual(expected);
    }
  });

  it("the AVX2 and scalar code paths (KILN_NATIVE_ISA)", { timeout: 90_000 }, () => {
    for (const isa of ["avx2", "scalar"]) {
      const { results } = runChild(["native-prebuilt"], { KILN_NATIVE_ISA: isa });
      const r = results["native-prebuilt"]!;
      if (isa === "avx2" && !r.tier.startsWith("native-avx2")) continue; // a CPU without AVX2
      expect(r.tier).toBe(`native-${isa}/prebuilt`);
      expect(r.ids).toEqual(expected);
    }
  });

  it("auto runs the wasm tier where no native tier loads", { timeout: 60_000 }, () => {
    const { results, isOnednnMapped, isTierAddonMapped } = runChild(["auto"], {
      KILN_DISABLE_NATIVE_TIER: "1",
    });
    expect(isOnednnMapped).toBe(false);
    expect(isTierAddonMapped).toBe(false);
    expect(results.auto!.tier).toBe("wasm-simd/wasm");
    expect(results.auto!.ids).toEqual(expected);
    expect(() => runChild(["native"], { KILN_DISABLE_NATIVE_TIER: "1" })).toThrow(
      /KILN_DISABLE_NATIVE_TIER/,
    );
  });

  it("a forced tier that cannot load is an error, not a fallback", () => {
    expect(() => runChild(["onednn"])).toThrow(/KILN_DISABLE_ONEDNN/);
  });
});
