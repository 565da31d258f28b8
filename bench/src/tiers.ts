// Kernel tiers side by side (ADR 0022): bench/src/forward.ts on llama-110m once per tier, in
// one run, each tier in its own process. Every tier but onednn runs with KILN_DISABLE_ONEDNN=1,
// so oneDNN cannot load (its dlopen is refused). Prints decode batch 16 and prefill tokens/s and
// each tier's share of the oneDNN path's, per round and best of rounds; the issue #22 target is
// ≥ 50% for the native tiers. The wasm tier (ADR 0026) is the portable one.
//   npm run bench:tiers [-- --seconds 3] [--prefill 256] [--rounds 1] [--typescript]
// --typescript adds the TypeScript tier (1–2% of oneDNN: slow to measure). The machine may be
// shared: compare tiers within one run, not across runs.
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";

interface TierRun {
  readonly tier: string;
  readonly env: NodeJS.ProcessEnv;
}

const FORWARD = new URL("./forward.ts", import.meta.url).pathname;
const NO_ONEDNN = { KILN_DISABLE_ONEDNN: "1" };

function measure(run: TierRun, args: readonly string[]): { decode: number; prefill: number } {
  const out = execFileSync(process.execPath, ["--import", "tsx", FORWARD, ...args], {
    env: { ...process.env, ...run.env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const tps = (prefix: string) => {
    const line = out.split("\n").find((l) => l.startsWith(prefix));
    const cols = line?.slice(26).trim().split(/\s+/);
    if (cols === undefined) throw new Error(`${run.tier}: no "${prefix}" row in\n${out}`);
    return Number(cols[2]);
  };
  const gemm = /gemm: (\S+)/.exec(out)?.[1];
  const family = run.tier.startsWith("native") ? "native" : run.tier;
  if (gemm === undefined || !gemm.startsWith(family)) {
    throw new Error(`${run.tier}: forward.ts ran the ${gemm} gemm`);
  }
  return { decode: tps("decode batch 16"), prefill: tps("prefill") };
}

const pctOf = (x: number, b: number) => `${((100 * x) / b).toFixed(0)}%`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "3" },
      prefill: { type: "string", default: "256" },
      rounds: { type: "string", default: "1" },
      typescript: { type: "boolean", default: false },
    },
  });
  const runs: TierRun[] = [
    { tier: "onednn", env: { KILN_KERNEL_TIER: "onednn" } },
    { tier: "native-source", env: { KILN_KERNEL_TIER: "native-source", ...NO_ONEDNN } },
    { tier: "native-prebuilt", env: { KILN_KERNEL_TIER: "native-prebuilt", ...NO_ONEDNN } },
    {
      tier: "native-avx2-prebuilt",
      env: { KILN_KERNEL_TIER: "native-prebuilt", KILN_NATIVE_ISA: "avx2", ...NO_ONEDNN },
    },
    { tier: "wasm", env: { KILN_KERNEL_TIER: "wasm", ...NO_ONEDNN } },
  ];
  if (values.typescript)
    runs.push({ tier: "typescript", env: { KILN_KERNEL_TIER: "typescript", ...NO_ONEDNN } });
  const args = [
    "--batches",
    "16",
    "--context",
    "128",
    "--prefill",
    values.prefill,
    "--seconds",
    values.seconds,
  ];
  const best = new Map<string, { decode: number; prefill: number }>();
  const perRound: string[] = [];
  // Rounds interleave the tiers, so a neighbour's load spreads over all of them; best of rounds.
  let roundBase: { decode: number; prefill: number } | undefined;
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const run of runs) {
      const r = measure(
        run,
        run.tier === "typescript"
          ? ["--batches", "16", "--context", "128", "--prefill", "64", "--seconds", "1"]
          : args,
      );
      const prev = best.get(run.tier);
      best.set(run.tier, {
        decode: Math.max(prev?.decode ?? 0, r.decode),
        prefill: Math.max(prev?.prefill ?? 0, r.prefill),
      });
      console.error(`${run.tier}: decode b16 ${r.decode} tok/s, prefill ${r.prefill} tok/s`);
      const ref = run.tier === "onednn" ? r : roundBase;
      roundBase = ref;
      if (run.tier !== "onednn" && ref !== undefined) {
        perRound.push(
          `round ${round + 1} ${run.tier.padEnd(22)} decode b16 ${pctOf(r.decode, ref.decode)}, prefill ${pctOf(r.prefill, ref.prefill)} of this round's oneDNN`,
        );
      }
    }
  }
  console.log(`\n${perRound.join("\n")}`);
  const base = best.get("onednn")!;
  const pct = (x: number, b: number) => `${((100 * x) / b).toFixed(0)}%`;
  console.log(
    `\n${"tier".padEnd(22)}${"decode b16 tok/s".padStart(18)}${"vs onednn".padStart(11)}${`prefill ${values.prefill} tok/s`.padStart(20)}${"vs onednn".padStart(11)}`,
  );
  for (const [tier, r] of best) {
    console.log(
      `${tier.padEnd(22)}${r.decode.toFixed(1).padStart(18)}${pct(r.decode, base.decode).padStart(11)}` +
        `${r.prefill.toFixed(1).padStart(20)}${pct(r.prefill, base.prefill).padStart(11)}`,
    );
  }
  const native = best.get("native-prebuilt")!;
  const isMet = native.decode >= base.decode / 2 && native.prefill >= base.prefill / 2;
  console.log(
    `\nprebuilt native tier ≥ 50% of oneDNN on decode b16 and prefill: ${isMet ? "yes" : "NO"}`,
  );
  console.log("The machine may be shared: compare tiers within one run.");
}

await main();
