import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

/** file: URL of tsx's ESM API (require.resolve would pick its CommonJS build). */
function resolveTsxEsmApi(): string {
  const pkgPath = createRequire(import.meta.url).resolve("tsx/package.json");
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as {
    exports: Record<string, { import?: { default?: string } }>;
  };
  const rel = pkg.exports["./esm/api"]?.import?.default;
  if (rel === undefined) throw new Error(`${pkgPath} does not export tsx/esm/api for import`);
  return pathToFileURL(join(dirname(pkgPath), rel)).href;
}

/**
 * Starts the thread whose entry module is `./<name>.ts` beside `callerUrl` (the caller's
 * `import.meta.url`) when running from TypeScript source, or `./<name>.js` beside the bundle
 * (scripts/build-service.mjs writes each thread entry next to `main.js`). From source the entry
 * needs tsx's loader inside the thread: on Node 20 `execArgv: ["--import", "tsx"]` does not
 * reach a worker's entry module (nodejs/node#47747), so a small bootstrap registers tsx's ESM
 * hooks in the thread (tsx/esm/api, resolved from this package so any cwd works) and then
 * imports the entry.
 */
export function startEntryThread(callerUrl: string, name: string, workerData: unknown): Worker {
  const isTypeScript = callerUrl.endsWith(".ts");
  const entry = new URL(`./${name}.${isTypeScript ? "ts" : "js"}`, callerUrl);
  if (!isTypeScript) return new Worker(entry, { workerData });
  const bootstrap = `import(${JSON.stringify(resolveTsxEsmApi())})
  .then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })
  .catch((err) => { process.nextTick(() => { throw err; }); });`;
  return new Worker(bootstrap, { eval: true, workerData, execArgv: [] });
}

/**
 * Waits for a thread's first message: `{ type: "ready" }` resolves with `onReady(message)`;
 * `{ type: "init-error", message }`, an error or an exit rejects, and the thread is terminated.
 */
export async function awaitThreadReady<M extends { readonly type: string }, T>(
  thread: Worker,
  what: string,
  onReady: (msg: M) => T,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onExit = (code: number) => reject(new Error(`${what} exited (${code})`));
    thread.once("error", reject);
    thread.once("exit", onExit);
    thread.once("message", (msg: M & { readonly message?: string }) => {
      thread.off("error", reject);
      thread.off("exit", onExit);
      if (msg.type === "ready") resolve(onReady(msg));
      else reject(new Error(msg.type === "init-error" ? msg.message : "unexpected first message"));
    });
  }).catch(async (err: unknown) => {
    await thread.terminate();
    throw err;
  });
}
