import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { readJsonFile } from "./config";
import { hasErrnoCode, ModelError } from "./errors";

/** Bytes of one file received so far; `totalBytes` is 0 while the server has not said. */
export interface HubProgress {
  readonly file: string;
  readonly bytes: number;
  readonly totalBytes: number;
}

export interface HubOptions {
  /** Branch, tag or commit; default "main". */
  readonly revision?: string;
  /** Default: env KILN_CACHE_DIR, else ~/.cache/kiln/hub. */
  readonly cacheDir?: string;
  /** Default: env HF_TOKEN, else HUGGING_FACE_HUB_TOKEN. Sent as `Authorization: Bearer`. */
  readonly token?: string;
  /** Default: env HF_ENDPOINT, else https://huggingface.co. */
  readonly endpoint?: string;
  /** Called after every received chunk; must not throw. */
  readonly onProgress?: (p: HubProgress) => void;
  /** For tests and proxies; default the global fetch. */
  readonly fetchImpl?: typeof fetch;
}

/** Files a Llama-family model directory needs besides its safetensors. */
const MODEL_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
];
const INDEX_FILE = "model.safetensors.index.json";
/** Attempts per file; each retry resumes from the bytes already on disk. */
const MAX_ATTEMPTS = 4;

const revisionInfoSchema = z.looseObject({
  sha: z.string().regex(/^[\w.-]+$/),
  siblings: z.array(z.looseObject({ rfilename: z.string() })),
});

interface Resolved {
  readonly endpoint: string;
  readonly revision: string;
  readonly cacheDir: string;
  readonly headers: Record<string, string>;
  readonly fetchImpl: typeof fetch;
  readonly onProgress: (p: HubProgress) => void;
}

function resolveOptions(opts: HubOptions): Resolved {
  const token = opts.token ?? process.env["HF_TOKEN"] ?? process.env["HUGGING_FACE_HUB_TOKEN"];
  const endpoint = opts.endpoint ?? process.env["HF_ENDPOINT"] ?? "https://huggingface.co";
  return {
    endpoint: endpoint.replace(/\/+$/, ""),
    revision: opts.revision ?? "main",
    cacheDir: opts.cacheDir ?? process.env["KILN_CACHE_DIR"] ?? join(homedir(), ".cache/kiln/hub"),
    headers: token ? { authorization: `Bearer ${token}` } : {},
    fetchImpl: opts.fetchImpl ?? fetch,
    onProgress: opts.onProgress ?? (() => {}),
  };
}

/** A top-level file name the Hub listed; anything with a path is not downloaded. */
function isPlainFileName(name: string): boolean {
  return name !== "" && !name.includes("/") && !name.includes("\\") && !name.startsWith(".");
}

/** Maps an HTTP failure to a ModelError that tells the operator what to do. */
function statusError(status: number, repoId: string, what: string): ModelError {
  if (status === 401 || status === 403) {
    return new ModelError(
      "UNAUTHORIZED",
      `Hub refused ${what} of ${repoId} (HTTP ${status}): set HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) ` +
        `to a token with access; the Hub also answers 401 for repositories that do not exist`,
    );
  }
  if (status === 404) {
    return new ModelError("NOT_FOUND", `Hub has no ${what} for ${repoId} (HTTP 404)`);
  }
  return new ModelError("DOWNLOAD_FAILED", `Hub answered HTTP ${status} for ${what} of ${repoId}`);
}

async function fetchRevision(repoId: string, r: Resolved) {
  const url = `${r.endpoint}/api/models/${repoId}/revision/${encodeURIComponent(r.revision)}`;
  const res = await r.fetchImpl(url, { headers: r.headers, redirect: "follow" });
  if (!res.ok) throw statusError(res.status, repoId, `revision ${r.revision}`);
  const parsed = revisionInfoSchema.safeParse(await res.json());
  if (!parsed.success) {
    throw new ModelError("DOWNLOAD_FAILED", `Hub sent malformed revision info for ${repoId}`);
  }
  return parsed.data;
}

async function sizeOrNull(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (hasErrnoCode(err, "ENOENT")) return null;
    throw err;
  }
}

/** Total size from `Content-Range: bytes a-b/total`, or null when absent or malformed. */
function parseContentRange(header: string | null): { start: number; total: number } | null {
  const m = header?.match(/^bytes (\d+)-\d+\/(\d+)$/);
  return m ? { start: Number(m[1]), total: Number(m[2]) } : null;
}

/**
 * One attempt at fetching `url` into `partial`, resuming from its current size. Returns
 * normally when the body ended; throws on HTTP errors (ModelError) and broken transfers.
 */
async function fetchInto(url: string, partial: string, file: string, repoId: string, r: Resolved) {
  let start = (await sizeOrNull(partial)) ?? 0;
  const headers = start > 0 ? { ...r.headers, range: `bytes=${start}-` } : r.headers;
  const res = await r.fetchImpl(url, { headers, redirect: "follow" });
  const range = parseContentRange(res.headers.get("content-range"));
  if (res.status === 416) {
    // The partial file is not a prefix we can extend: start over on the next attempt.
    await rm(partial, { force: true });
    throw new Error(`range ${start}- not satisfiable`);
  }
  if (res.status >= 500) throw new Error(`HTTP ${res.status}`); // transient: retry
  if (!res.ok || res.body === null) throw statusError(res.status, repoId, `file ${file}`);
  let totalBytes: number;
  if (res.status === 206 && range !== null && range.start === start) {
    totalBytes = range.total;
  } else {
    start = 0; // a plain 200 (or a range we did not ask for) restarts the file
    totalBytes = Number(res.headers.get("content-length") ?? 0);
  }
  const handle = await open(partial, start === 0 ? "w" : "a");
  let bytes = start;
  try {
    for await (const chunk of res.body) {
      await handle.write(chunk);
      bytes += chunk.length;
      r.onProgress({ file, bytes, totalBytes });
    }
  } finally {
    await handle.close();
  }
  if (totalBytes > 0 && bytes !== totalBytes) {
    throw new Error(`received ${bytes} of ${totalBytes} bytes`);
  }
}

/** Downloads one file into `dir` via `<file>.incomplete`, retrying with Range resumes. */
async function downloadFile(repoId: string, sha: string, file: string, dir: string, r: Resolved) {
  const dest = join(dir, file);
  if ((await sizeOrNull(dest)) !== null) return; // snapshots are immutable per commit
  const partial = `${dest}.incomplete`;
  const url = `${r.endpoint}/${repoId}/resolve/${encodeURIComponent(sha)}/${encodeURIComponent(file)}`;
  let lastError: unknown = null;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    try {
      await fetchInto(url, partial, file, repoId, r);
      await rename(partial, dest);
      return;
    } catch (err) {
      if (err instanceof ModelError) throw err;
      lastError = err;
    }
  }
  throw new ModelError(
    "DOWNLOAD_FAILED",
    `downloading ${file} of ${repoId} failed ${MAX_ATTEMPTS} times: ${(lastError as Error)?.message}`,
    { cause: lastError },
  );
}

/** Safetensors files the loader will read: the index's shards, else model.safetensors. */
async function weightFiles(
  repoId: string,
  sha: string,
  siblings: ReadonlySet<string>,
  dir: string,
  r: Resolved,
): Promise<string[]> {
  if (siblings.has(INDEX_FILE)) {
    await downloadFile(repoId, sha, INDEX_FILE, dir, r);
    const index = (await readJsonFile(join(dir, INDEX_FILE), "INVALID_CHECKPOINT")) as {
      weight_map?: Record<string, unknown>;
    };
    const shards = new Set(Object.values(index.weight_map ?? {}));
    for (const shard of shards) {
      if (typeof shard !== "string" || !isPlainFileName(shard) || !siblings.has(shard)) {
        throw new ModelError("INVALID_CHECKPOINT", `${repoId}: index names unknown shard ${shard}`);
      }
    }
    return [...shards] as string[];
  }
  if (siblings.has("model.safetensors")) return ["model.safetensors"];
  throw new ModelError(
    "INVALID_CHECKPOINT",
    `${repoId} has neither model.safetensors nor ${INDEX_FILE}; Kiln reads safetensors only`,
  );
}

/**
 * Downloads the files a model needs (config, generation config, tokenizer files, safetensors)
 * of `repoId` at a revision into `<cacheDir>/models--owner--name/snapshots/<sha>` and returns
 * that directory. Files already there are not fetched again; interrupted files resume.
 * Throws ModelError: UNAUTHORIZED (401/403), NOT_FOUND (404), DOWNLOAD_FAILED, INVALID_CHECKPOINT.
 */
export async function downloadFromHub(repoId: string, opts: HubOptions = {}): Promise<string> {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoId) || repoId.includes("..")) {
    throw new ModelError("NOT_FOUND", `${JSON.stringify(repoId)} is not a Hub repository id`);
  }
  const r = resolveOptions(opts);
  const info = await fetchRevision(repoId, r);
  const siblings = new Set(info.siblings.map((s) => s.rfilename).filter(isPlainFileName));
  if (!siblings.has("config.json")) {
    throw new ModelError("INVALID_CHECKPOINT", `${repoId} has no config.json`);
  }
  const dir = join(r.cacheDir, `models--${repoId.replace("/", "--")}`, "snapshots", info.sha);
  await mkdir(dir, { recursive: true });
  for (const file of MODEL_FILES) {
    if (siblings.has(file)) await downloadFile(repoId, info.sha, file, dir, r);
  }
  for (const file of await weightFiles(repoId, info.sha, siblings, dir, r)) {
    await downloadFile(repoId, info.sha, file, dir, r);
  }
  return dir;
}

/**
 * A model spec as a local directory: an existing directory is returned as-is (resolved to an
 * absolute path); a path-like spec that does not exist is NOT_FOUND; anything else is a Hub
 * repository id passed to `downloadFromHub`.
 */
export async function resolveModelDir(spec: string, opts: HubOptions = {}): Promise<string> {
  const path = resolve(spec);
  try {
    if ((await stat(path)).isDirectory()) return path;
  } catch (err) {
    if (!hasErrnoCode(err, "ENOENT")) throw err;
  }
  if (isAbsolute(spec) || spec.startsWith(".") || spec.startsWith("~")) {
    throw new ModelError("NOT_FOUND", `model directory ${spec} does not exist`);
  }
  return downloadFromHub(spec, opts);
}
