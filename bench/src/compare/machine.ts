import { execFileSync } from "node:child_process";
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
  /** The commit the Kiln processes ran from, and the files that differed from it. */
  readonly gitCommit: string;
  readonly dirtyFiles: readonly string[];
}

/** HEAD and the modified tracked files under packages/ and services/ (what Kiln runs). */
function gitState(): { gitCommit: string; dirtyFiles: string[] } {
  const git = (args: string[]) =>
    execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
  try {
    const status = git(["status", "--porcelain", "--untracked-files=no", "packages", "services"]);
    return {
      gitCommit: git(["rev-parse", "--short", "HEAD"]),
      dirtyFiles: status ? status.split("\n").map((line) => line.slice(3)) : [],
    };
  } catch {
    return { gitCommit: "unknown", dirtyFiles: [] };
  }
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
    ...gitState(),
  };
}
