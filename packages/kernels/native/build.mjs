// Builds the native GEMM addon (binding.gyp) offline where possible.
//
// node-gyp downloads Node's headers unless told where they are. Node installs that ship their
// headers (Debian's nodejs: /usr/include/node; official tarballs and nvm: <prefix>/include/node)
// need no network, so point node-gyp at them when their version matches the running Node.
// An explicit `--nodedir` / `npm_config_nodedir` always wins.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");

function tryLocalNodeDir() {
  const prefix = dirname(dirname(process.execPath));
  try {
    const header = readFileSync(join(prefix, "include", "node", "node_version.h"), "utf8");
    const part = (name) => header.match(new RegExp(`#define NODE_${name}_VERSION (\\d+)`))?.[1];
    const version = `v${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`;
    return version === process.version ? prefix : null;
  } catch {
    return null;
  }
}

// Two addons (binding.gyp): kiln_tier, the addon's own GEMM, wherever a C++ compiler is; kiln_gemm
// over oneDNN only where its header is. Without a compiler the worker loads the committed
// prebuilt kiln_tier (prebuilds/, scripts/build-prebuilt.mjs), so the fast path still comes with
// `npm ci`; without that either, the TypeScript tier runs and says so loudly at start-up.
const ONEDNN_HEADER = "/usr/include/oneapi/dnnl/dnnl.h";
const hasCompiler = ["c++", "g++", "clang++"].some(
  (cc) => spawnSync(cc, ["--version"], { stdio: "ignore" }).status === 0,
);
if (!hasCompiler) {
  const prebuilt = join(
    packageDir,
    "prebuilds",
    `${process.platform}-${process.arch}`,
    "kiln_tier.node",
  );
  const fallback = existsSync(prebuilt) ? `the prebuilt ${prebuilt}` : "the TypeScript kernels";
  console.warn(
    `kernels: no C++ compiler; skipping the source build, the worker will use ${fallback}`,
  );
  process.exit(0);
}
if (!existsSync(ONEDNN_HEADER)) {
  console.warn(
    `kernels: ${ONEDNN_HEADER} not found; building only the addon's own GEMM (kiln_tier). apt-get install libdnnl-dev adds the optional oneDNN tier`,
  );
}

const args = [require.resolve("node-gyp/bin/node-gyp.js"), "rebuild", ...process.argv.slice(2)];
const hasNodeDir = args.some((a) => a.startsWith("--nodedir")) || !!process.env.npm_config_nodedir;
const localNodeDir = hasNodeDir ? null : tryLocalNodeDir();
if (localNodeDir) args.push(`--nodedir=${localNodeDir}`);

const result = spawnSync(process.execPath, args, { cwd: packageDir, stdio: "inherit" });
process.exit(result.status ?? 1);
