#!/usr/bin/env node
/**
 * Compiles one service to plain JavaScript: `node ../../scripts/build-service.mjs` from a service
 * directory writes `dist/main.js` (and, for the worker, the thread entries
 * `dist/cpu-worker.js` and `dist/grammar-host-thread.js` plus the native kernels addons and the committed prebuilds beside it). The @kiln/* workspace packages
 * are bundled in (they export TypeScript sources); every npm dependency stays external and is
 * loaded from node_modules at run time, so native modules (webgpu, tokenizers, grpc) work as
 * installed. Production images run `node dist/main.js`: no tsx, no TypeScript.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const serviceDir = process.cwd();
const outDir = join(serviceDir, "dist");

/** Bundle @kiln/* (TypeScript workspaces); leave every other bare import to node_modules. */
const externalNpm = {
  name: "external-npm",
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith("@kiln/") || args.path.startsWith("node:")) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/**
 * The kernels load their addon by a path relative to their source file; in the bundle it sits
 * beside the entry, so the path is rewritten to `./kiln_gemm.node` (copied below).
 */
const ADDON_SOURCE_PATH = "../../build/Release/kiln_gemm.node";
const addonBeside = {
  name: "addon-beside",
  setup(b) {
    b.onLoad({ filter: /native-addon\.ts$/ }, async (args) => {
      const { readFile } = await import("node:fs/promises");
      const text = await readFile(args.path, "utf8");
      if (!text.includes(ADDON_SOURCE_PATH)) {
        throw new Error(`${args.path} no longer names ${ADDON_SOURCE_PATH}: update the build`);
      }
      return { contents: text.replace(ADDON_SOURCE_PATH, "./kiln_gemm.node"), loader: "ts" };
    });
  },
};

/**
 * The same for the kernel tiers (ADRs 0022, 0026): kiln_tier's source build and the committed
 * prebuilds (the linux-x64 kiln_tier.node and the wasm32 GEMM) are copied beside the entry.
 */
const TIER_PATHS = [
  ["tier-addon.ts", "../../build/Release/kiln_tier.node", "./kiln_tier.node"],
  ["tier-addon.ts", "../../prebuilds/", "./prebuilds/"],
  ["wasm-gemm.ts", "../../prebuilds/", "./prebuilds/"],
];
const tiersBeside = {
  name: "tiers-beside",
  setup(b) {
    b.onLoad({ filter: /(tier-addon|wasm-gemm)\.ts$/ }, async (args) => {
      const { readFile } = await import("node:fs/promises");
      let text = await readFile(args.path, "utf8");
      for (const [file, from, to] of TIER_PATHS) {
        if (!args.path.endsWith(file)) continue;
        if (!text.includes(from)) {
          throw new Error(`${args.path} no longer names ${from}: update the build`);
        }
        text = text.replace(from, to);
      }
      return { contents: text, loader: "ts" };
    });
  },
};

const entryPoints = { main: join(serviceDir, "src/main.ts") };
const isWorker = existsSync(join(serviceDir, "src/worker-service.ts"));
if (isWorker) {
  entryPoints["cpu-worker"] = join(REPO_ROOT, "packages/kernels/src/cpu/cpu-worker.ts");
  entryPoints["grammar-host-thread"] = join(
    REPO_ROOT,
    "packages/kernels/src/grammar/grammar-host-thread.ts",
  );
}

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
await build({
  entryPoints,
  outdir: outDir,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
  plugins: [externalNpm, addonBeside, tiersBeside],
  // Bundled CommonJS dependencies of @kiln/* code would need `require`; ESM output provides it.
  banner: {
    js: "import { createRequire as __kilnCreateRequire } from 'node:module'; const require = __kilnCreateRequire(import.meta.url);",
  },
});
if (isWorker) {
  const addon = join(REPO_ROOT, "packages/kernels/build/Release/kiln_gemm.node");
  // Without the addon the kernels fall back to WebAssembly/TypeScript, as from source.
  if (existsSync(addon)) copyFileSync(addon, join(outDir, "kiln_gemm.node"));
  const tier = join(REPO_ROOT, "packages/kernels/build/Release/kiln_tier.node");
  if (existsSync(tier)) copyFileSync(tier, join(outDir, "kiln_tier.node"));
  cpSync(join(REPO_ROOT, "packages/kernels/prebuilds"), join(outDir, "prebuilds"), {
    recursive: true,
  });
}
