/**
 * The CPU kernel tier at worker start-up (ADR 0022): the flags that choose it, the loud warning
 * a slow tier logs, KILN_REQUIRE_NATIVE, and the `kiln_worker_kernel_tier_info` gauge.
 */
import { kernelTierSetting, resolveKernelTier } from "@kiln/kernels";
import { Gauge, type Registry } from "@kiln/telemetry";

/** Tiers that run far below the fast path (ADR 0022: 1–2% of oneDNN's tokens/s). */
const SLOW_TIERS = new Set(["typescript", "native-scalar"]);
const WASM_TIER = "wasm-simd";

/**
 * Takes `--kernel-tier <t>` and `--require-native` out of argv and applies them as
 * KILN_KERNEL_TIER / KILN_REQUIRE_NATIVE (flags win over the environment), which the backend's
 * thread inherits. Throws on an unknown tier. Returns the remaining arguments.
 */
export function takeKernelTierFlags(argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--require-native") env.KILN_REQUIRE_NATIVE = "1";
    else if (arg === "--kernel-tier") env.KILN_KERNEL_TIER = argv[++i] ?? "";
    else if (arg.startsWith("--kernel-tier=")) env.KILN_KERNEL_TIER = arg.slice(14);
    else rest.push(arg);
  }
  kernelTierSetting(env.KILN_KERNEL_TIER);
  return rest;
}

/** What the start-up check found. */
export interface KernelTierReport {
  readonly tier: string;
  readonly detail: string;
  readonly isSlow: boolean;
}

/**
 * Checks the tier the backend runs. A slow tier the operator did not force (KILN_KERNEL_TIER)
 * throws when KILN_REQUIRE_NATIVE=1, else writes a loud warning to stderr saying what it costs
 * and how to get the fast one. The WebAssembly tier (wasm-simd, ADR 0026) does not warn but,
 * unless forced, is an error under KILN_REQUIRE_NATIVE=1 too (it is not native).
 */
export function checkKernelTier(tier: string, env: NodeJS.ProcessEnv): KernelTierReport {
  const isSlow = SLOW_TIERS.has(tier);
  let detail = tier;
  try {
    detail = resolveKernelTier().detail;
  } catch (err) {
    detail = err instanceof Error ? err.message : String(err);
  }
  const isForced =
    env.KILN_KERNEL_TIER === tier || (env.KILN_KERNEL_TIER === "wasm" && tier === WASM_TIER);
  // The WebAssembly tier is the portable one (ADR 0026): no banner, but not native either.
  if ((isSlow || tier === WASM_TIER) && !isForced && env.KILN_REQUIRE_NATIVE === "1") {
    throw new Error(
      `KILN_REQUIRE_NATIVE=1 but the CPU kernels run the ${isSlow ? "slow " : ""}"${tier}" tier: ${detail}`,
    );
  }
  if (isSlow && !isForced) {
    const bar = "!".repeat(78);
    process.stderr.write(
      `${bar}\nkiln worker: WARNING: the CPU kernels run the slow "${tier}" tier, about 1-2% of the\n` +
        `fast path's tokens/s (docs/benchmarks.md). Why: ${detail}\n` +
        "Fast tier: the prebuilt packages/kernels/prebuilds/linux-x64/kiln_tier.node (linux-x64),\n" +
        "a C++ compiler (npm run build -w @kiln/kernels), or the WebAssembly tier (KILN_KERNEL_TIER=wasm,\n" +
        "every platform); KILN_REQUIRE_NATIVE=1 makes this an error.\n" +
        `${bar}\n`,
    );
  }
  return { tier, detail, isSlow };
}

/** `kiln_worker_kernel_tier_info{tier="native-avx512"} 1`. */
export function registerKernelTierGauge(registry: Registry, tier: string): void {
  const gauge = new Gauge({
    name: "kiln_worker_kernel_tier_info",
    help: "The CPU kernel tier in use (onednn, native-avx512, native-avx2, native-scalar, wasm-simd, typescript)",
    labelNames: ["tier"],
    registers: [registry],
  });
  gauge.set({ tier }, 1);
}
