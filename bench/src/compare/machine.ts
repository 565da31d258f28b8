import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg, totalmem } from "node:os";
import { resolve } from "node:path";
import { REPO_ROOT } from "./processes";

/** What the results depend on besides the code: the CPU, its load, and which kernels ran. */
export interface MachineInfo {
  readonly cpuModel: string;
  readonly numCpus: number;
  readonly memoryGiB: number;
  /** 1, 5 and 15 minute load averages: above ~0.5 the machine was shared during the run. */
  readonly loadAverage: readonly number[];
  readonly nodeVersion: string;
  /** "native (oneDNN)" when the kernels' addon is built, else the TypeScript fallback. */
  readonly kilnGemm: string;
  readonly llamaCppRelease: string;
}

function llamaCppRelease(): string {
  try {
    // The package's exports map hides package.json from require.resolve; find its directory.
    const require = createRequire(import.meta.url);
    const pkgPath = resolve(require.resolve("node-llama-cpp"), "../../package.json");
    const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { version: string };
    const info = JSON.parse(
      readFileSync(resolve(pkgPath, "../llama/llama.cpp.info.json"), "utf8"),
    ) as { tag: string };
    return `${info.tag} (node-llama-cpp ${pkg.version}, prebuilt CPU binary)`;
  } catch {
    return "unknown";
  }
}

export function machineInfo(): MachineInfo {
  const addon = resolve(REPO_ROOT, "packages/kernels/build/Release/kiln_gemm.node");
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    numCpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverage: loadavg(),
    nodeVersion: process.version,
    kilnGemm: existsSync(addon) ? "native (oneDNN)" : "TypeScript fallback (addon not built)",
    llamaCppRelease: llamaCppRelease(),
  };
}
