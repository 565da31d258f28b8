// Runs a command (turbo) with KILN_BUILD_MACHINE set to what the native build depends on: whether
// oneDNN's header and library are installed and which C++ compiler is present. turbo.json lists
// it in @kiln/kernels#build's env, so installing oneDNN or a compiler later changes the build's
// hash and the next `npm start` rebuilds the addons instead of replaying a cached build (ADR 0022).
//   node scripts/with-machine.mjs turbo run build --output-logs=errors-only
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

function compiler() {
  for (const cc of ["c++", "g++", "clang++"]) {
    const r = spawnSync(cc, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return r.stdout.split("\n")[0];
  }
  return "none";
}

const onednn = ["/usr/include/oneapi/dnnl/dnnl.h", "/usr/lib/x86_64-linux-gnu/libdnnl.so.2"]
  .map((p) => (existsSync(p) ? "1" : "0"))
  .join("");
const machine = `onednn=${onednn};cxx=${compiler()};${process.platform}-${process.arch}`;
const [cmd, ...args] = process.argv.slice(2);
if (cmd === undefined) {
  console.log(machine);
  process.exit(0);
}
const r = spawnSync(cmd, args, {
  stdio: "inherit",
  shell: false,
  env: {
    ...process.env,
    KILN_BUILD_MACHINE: machine,
    PATH: `${process.cwd()}/node_modules/.bin:${process.env.PATH}`,
  },
});
process.exit(r.status ?? 1);
