import { readFileSync } from "node:fs";
import { requireAvailable } from "@kiln/test-support";
import { afterEach, describe, expect, it } from "vitest";
import { newLargeBuffer, setNativeHugePages, tryLoadNativeAddon } from "../src/cpu/native-addon";

// Packed weights and KV pools in transparent huge pages (native/huge-pages.cc; KILN_HUGE_PAGES).

/** Huge pages the kernel has handed out at page faults so far, machine-wide (/proc/vmstat). */
function thpFaults(): number {
  const line = readFileSync("/proc/vmstat", "utf8")
    .split("\n")
    .find((l) => l.startsWith("thp_fault_alloc "));
  return Number(line?.split(" ")[1] ?? Number.NaN);
}

/** Whether this kernel gives madvise()d memory transparent huge pages ("always" or "madvise"). */
function hasMadviseThp(): boolean {
  try {
    return /\[(always|madvise)\]/.test(
      readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"),
    );
  } catch {
    return false;
  }
}

const hasAddon = requireAvailable(
  "the kiln_gemm addon with hugePageBuffer (huge-pages.cc)",
  typeof tryLoadNativeAddon()?.hugePageBuffer === "function",
  "npm run build -w @kiln/kernels",
);

describe.runIf(hasAddon)("huge-page buffers (huge-pages.cc)", () => {
  afterEach(() => setNativeHugePages(true));

  it("hands out zero-filled buffers that never overlap, small and large, on or off", () => {
    const sizes = [100, 70_000, 1 << 20, 3_000_001];
    const buffers = [true, false].flatMap((on) => {
      expect(setNativeHugePages(on)).toBe(true);
      return sizes.map((bytes) => new Uint8Array(newLargeBuffer(bytes)));
    });
    for (const [i, b] of buffers.entries()) {
      expect(b.length).toBe(sizes[i % sizes.length]);
      expect(b.every((x) => x === 0)).toBe(true);
      b.fill(i + 1);
    }
    // Each still holds its own value after all were written: no buffer shares bytes with another.
    for (const [i, b] of buffers.entries()) expect(b.every((x) => x === i + 1)).toBe(true);
  });

  it.runIf(hasMadviseThp())("backs a large buffer with 2 MiB pages as it is written", () => {
    expect(setNativeHugePages(true)).toBe(true);
    const before = thpFaults();
    // Larger than a chunk (64 MiB), so it gets a fresh one whatever this process carved before.
    new Uint8Array(newLargeBuffer(70 << 20)).fill(1);
    // 35 pages of 2 MiB, faulted in as they are written; other processes can only add to it.
    expect(thpFaults() - before).toBeGreaterThanOrEqual(30);
  });

  it("refuses a size that is not a whole number of bytes", () => {
    expect(() => tryLoadNativeAddon()?.hugePageBuffer?.(-1)).toThrow(/whole number/);
    expect(() => tryLoadNativeAddon()?.hugePageBuffer?.(1.5)).toThrow(/whole number/);
  });
});
