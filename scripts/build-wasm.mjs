// Rebuilds the committed WebAssembly SIMD GEMM (ADR 0026):
//   packages/kernels/prebuilds/wasm32/kiln_gemm_simd.wasm
// from packages/kernels/wasm/gemm-simd.c: freestanding C (no libc, no stack, no data) compiled
// by clang for wasm32 with SIMD128 and linked by wasm-ld against an imported shared memory, so
// every worker thread instantiates the same module over one SharedArrayBuffer. Needs clang and
// lld (Debian 12: `apt-get install -y clang lld`, clang 14); CI and users never do, they load the
// committed file. Reproducible: the same clang gives the same bytes (no paths or timestamps are
// embedded; --strip-all drops the names section). Then commit the .wasm file.
//   node scripts/build-wasm.mjs [--clang clang-14] [--check]   (--check: fail if it differs)
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { clang: { type: "string", default: "clang" }, check: { type: "boolean" } },
});
const kernelsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "packages", "kernels");
const source = join(kernelsDir, "wasm", "gemm-simd.c");
const out = join(kernelsDir, "prebuilds", "wasm32", "kiln_gemm_simd.wasm");
const tmp = join(tmpdir(), `kiln_gemm_simd.${process.pid}.wasm`);
const flags = [
  "--target=wasm32",
  "-O3",
  "-msimd128", // the f32x4 kernels
  "-matomics", // shared memory needs the atomics and bulk-memory features
  "-mbulk-memory",
  "-ffreestanding",
  "-fno-builtin",
  "-nostdlib",
  "-Wall",
  "-Wextra",
  "-Werror",
  "-Wl,--no-entry",
  "-Wl,--import-memory", // env.memory: the one WebAssembly.Memory every thread shares
  "-Wl,--shared-memory",
  "-Wl,--max-memory=4294967296",
  "-Wl,-z,stack-size=0", // the kernels keep everything in locals
  "-Wl,--strip-all",
];
const r = spawnSync(values.clang, [...flags, "-o", tmp, source], { stdio: "inherit" });
if (r.error) throw new Error(`${values.clang}: ${r.error.message} (apt-get install -y clang lld)`);
if (r.status !== 0) throw new Error(`${values.clang} failed (${r.status})`);
const bytes = readFileSync(tmp);
rmSync(tmp);
if (values.check) {
  if (!bytes.equals(readFileSync(out))) throw new Error(`${out} differs from a fresh build`);
  console.log(`${out} matches a fresh build (${bytes.length} bytes)`);
} else {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bytes);
  console.log(`wrote ${out} (${bytes.length} bytes)`);
}
