import { once } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import type { BatchStore } from "./batch-store";
import type { FileStore } from "./file-store";

const READ_CHUNK = 256;

/**
 * Writes a batch's output file (2xx answers) and error file (the rest) from the answers
 * recorded in Redis, in input order, streaming (READ_CHUNK answers in memory at a time). The
 * file ids are derived from the batch id, so a finalization interrupted by a crash and run
 * again replaces the same files instead of leaving orphans. A file with no lines is not made
 * (its id is null), as OpenAI does.
 */
export async function writeResultFiles(
  store: BatchStore,
  files: FileStore,
  batchId: string,
  total: number,
  owner: string | null,
): Promise<{ outputFileId: string | null; errorFileId: string | null }> {
  await files.init();
  const out = { path: files.tmpPath(), numLines: 0 };
  const err = { path: files.tmpPath(), numLines: 0 };
  const outStream = createWriteStream(out.path);
  const errStream = createWriteStream(err.path);
  try {
    for (let from = 0; from < total; from += READ_CHUNK) {
      const results = await store.lineResults(batchId, from, Math.min(READ_CHUNK, total - from));
      for (const result of results) {
        if (!result) continue; // a cancelled or expired batch's unanswered lines
        const target = result.isError ? err : out;
        target.numLines++;
        await write(result.isError ? errStream : outStream, `${result.line}\n`);
      }
    }
  } finally {
    await Promise.all([close(outStream), close(errStream)]);
  }
  const commit = async (file: typeof out, suffix: string) => {
    if (file.numLines === 0) {
      await rm(file.path, { force: true });
      return null;
    }
    const id = `file-${batchId.replace(/^batch_/, "")}-${suffix}`;
    await files.commit(id, file.path, {
      filename: `${batchId}_${suffix}.jsonl`,
      purpose: "batch_output",
      owner,
    });
    return id;
  };
  return { outputFileId: await commit(out, "output"), errorFileId: await commit(err, "error") };
}

async function write(stream: WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream, "drain");
}

async function close(stream: WriteStream): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    stream.end((e?: Error | null) => (e ? reject(e) : resolve())),
  );
}
