import { readFileSync } from "node:fs";
import Module, { createRequire } from "node:module";

/**
 * Loads `@mlc-ai/web-xgrammar` (XGrammar's WebAssembly build) in Node. Its package says
 * `"type": "module"` but `lib/index.js` is a UMD bundle whose Emscripten loader reads
 * `require`, `__filename` and `module.exports`: imported as an ES module it finds none of them
 * and installs itself on `globalThis`. The shim compiles the file as the CommonJS module it is
 * (ADR 0016). The module is loaded once per process; the WebAssembly instance behind it is
 * created lazily by the library on first use.
 */
export type XGrammar = typeof import("@mlc-ai/web-xgrammar");

let loaded: XGrammar | null = null;

export function loadXGrammar(): XGrammar {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const path = require.resolve("@mlc-ai/web-xgrammar");
  const mod = new Module(path);
  mod.filename = path;
  // biome-ignore lint/suspicious/noExplicitAny: Module's private CommonJS compiler
  (mod as any).paths = [];
  // biome-ignore lint/suspicious/noExplicitAny: Module's private CommonJS compiler
  (mod as any)._compile(readFileSync(path, "utf8"), path);
  loaded = mod.exports as XGrammar;
  return loaded;
}
