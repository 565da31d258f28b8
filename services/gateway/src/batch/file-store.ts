import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { KilnError } from "@kiln/proto";

/** OpenAI's file object. */
export interface FileObject {
  readonly id: string;
  readonly object: "file";
  readonly bytes: number;
  readonly created_at: number;
  readonly filename: string;
  readonly purpose: string;
  readonly status: "processed";
  readonly status_details: null;
  readonly expires_at: null;
}

interface StoredFile extends FileObject {
  readonly owner: string | null;
}

export interface UploadLimits {
  readonly maxBytes: number;
  readonly maxLines: number;
}

/** The public shape of a stored file (the owner stays inside). */
export function publicFile(file: StoredFile): FileObject {
  const { owner: _owner, ...rest } = file;
  return rest;
}

export function newFileId(): string {
  return `file-${randomBytes(12).toString("hex")}`;
}

/**
 * Files on disk under `<dataDir>/files`: `<id>.jsonl` (content) and `<id>.json` (metadata,
 * written last, so a file without metadata does not exist). Content is streamed in and out,
 * never held whole in memory.
 */
export class FileStore {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "files");
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  contentPath(id: string): string {
    return join(this.dir, `${id}.jsonl`);
  }

  /**
   * Streams `content` to disk, enforcing the limits as it goes: over `maxBytes` is a 413
   * naming the byte limit, over `maxLines` a 400 naming the line limit (the partial file is
   * removed). Returns the byte and line counts of what was written to `tmpPath`.
   */
  async receive(content: Readable, tmpPath: string, limits: UploadLimits) {
    let numBytes = 0;
    let numLines = 0;
    let lastByte = 10;
    const counter = async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        numBytes += chunk.length;
        if (numBytes > limits.maxBytes) {
          throw new KilnError(
            "PAYLOAD_TOO_LARGE",
            `File is larger than the limit of ${limits.maxBytes} bytes (KILN_BATCH_MAX_FILE_BYTES).`,
            "file",
          );
        }
        for (const byte of chunk) if (byte === 10) numLines++;
        if (chunk.length > 0) lastByte = chunk[chunk.length - 1]!;
        if (numLines + (lastByte === 10 ? 0 : 1) > limits.maxLines) {
          throw new KilnError(
            "INVALID_REQUEST",
            `File has more than the limit of ${limits.maxLines} lines (KILN_BATCH_MAX_FILE_LINES).`,
            "file",
          );
        }
        yield chunk;
      }
    };
    try {
      await pipeline(content, counter, createWriteStream(tmpPath));
    } catch (err) {
      await rm(tmpPath, { force: true });
      throw err;
    }
    return { numBytes, numLines: numLines + (lastByte === 10 || numBytes === 0 ? 0 : 1) };
  }

  /** A temporary path in the files directory (same filesystem, so `commit` is a rename). */
  tmpPath(): string {
    return join(this.dir, `.tmp-${randomBytes(8).toString("hex")}`);
  }

  /** Makes `tmpPath` the content of file `id` and records its metadata. Idempotent per id. */
  async commit(
    id: string,
    tmpPath: string,
    meta: { filename: string; purpose: string; owner: string | null },
  ): Promise<FileObject> {
    const { size } = await stat(tmpPath);
    await rename(tmpPath, this.contentPath(id));
    const file: StoredFile = {
      id,
      object: "file",
      bytes: size,
      created_at: Math.floor(Date.now() / 1000),
      filename: meta.filename,
      purpose: meta.purpose,
      status: "processed",
      status_details: null,
      expires_at: null,
      owner: meta.owner,
    };
    const metaTmp = `${tmpPath}.json`;
    await writeFile(metaTmp, JSON.stringify(file));
    await rename(metaTmp, join(this.dir, `${id}.json`));
    return publicFile(file);
  }

  /** The stored file, or null when there is none. */
  async tryGet(id: string): Promise<StoredFile | null> {
    if (!/^file-[A-Za-z0-9_-]+$/.test(id)) return null;
    try {
      return JSON.parse(await readFile(join(this.dir, `${id}.json`), "utf8")) as StoredFile;
    } catch {
      return null;
    }
  }

  /** Every stored file, newest first. */
  async list(): Promise<StoredFile[]> {
    const names = (await readdir(this.dir)).filter((n) => n.endsWith(".json"));
    const files = await Promise.all(names.map((n) => this.tryGet(n.slice(0, -".json".length))));
    return files
      .filter((f): f is StoredFile => f !== null)
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
  }

  openContent(id: string): Readable {
    return createReadStream(this.contentPath(id));
  }

  /** Removes metadata first (the file stops existing), then content. */
  async delete(id: string): Promise<void> {
    await rm(join(this.dir, `${id}.json`), { force: true });
    await rm(this.contentPath(id), { force: true });
  }
}
