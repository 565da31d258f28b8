// Rebuilds the committed prebuilt kiln_tier addon (ADR 0022):
//   packages/kernels/prebuilds/<platform>-<arch>/kiln_tier.node
// from packages/kernels/native/tier-gemm.cc with node-gyp (binding.gyp's kiln_tier target), then
// strips it. kiln_tier is an N-API addon (one binary for every Node ≥ 20), needs no library but
// libc/libstdc++, and picks AVX-512, AVX2 or scalar code at load time, so one linux-x64 build
// serves every x86-64 Linux. Run on the oldest glibc you support (the committed one: Debian 12,
// gcc 12, glibc 2.36): `node scripts/build-prebuilt.mjs`, then commit the .node file.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const kernelsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "packages", "kernels");
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: kernelsDir, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status})`);
};
run(process.execPath, ["native/build.mjs"]);
const outDir = join(kernelsDir, "prebuilds", `${process.platform}-${process.arch}`);
mkdirSync(outDir, { recursive: true });
const out = join(outDir, "kiln_tier.node");
copyFileSync(join(kernelsDir, "build", "Release", "kiln_tier.node"), out);
run("strip", ["--strip-unneeded", out]);
console.log(`wrote ${out}`);
