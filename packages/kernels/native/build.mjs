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

// Without oneDNN the CPU backend still works on the TypeScript GEMM (about 100× slower), so a
// machine that lacks the library can start Kiln; CI sets KILN_REQUIRE_NATIVE=1 to fail instead.
const ONEDNN_HEADER = "/usr/include/oneapi/dnnl/dnnl.h";
if (!existsSync(ONEDNN_HEADER) && process.env.KILN_REQUIRE_NATIVE !== "1") {
  console.warn(
    `kernels: ${ONEDNN_HEADER} not found; skipping the native GEMM (apt-get install libdnnl-dev for the fast CPU backend)`,
  );
  process.exit(0);
}

const args = [require.resolve("node-gyp/bin/node-gyp.js"), "rebuild", ...process.argv.slice(2)];
const hasNodeDir = args.some((a) => a.startsWith("--nodedir")) || !!process.env.npm_config_nodedir;
const localNodeDir = hasNodeDir ? null : tryLocalNodeDir();
if (localNodeDir) args.push(`--nodedir=${localNodeDir}`);

const result = spawnSync(process.execPath, args, { cwd: packageDir, stdio: "inherit" });
process.exit(result.status ?? 1);
