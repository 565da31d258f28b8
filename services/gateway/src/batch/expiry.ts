import { randomBytes } from "node:crypto";
import type { BatchObject, BatchStore } from "./batch-store";
import type { FileStore } from "./file-store";
import { readLines } from "./read-lines";

const CHUNK = 256;
/** setTimeout's longest delay; a later expiry is re-armed when this fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const BATCH_EXPIRED_MESSAGE =
  "This request could not be executed before the completion window expired.";

/**
 * Gives every line of an expired batch that has no answer its batch_expired error, in
 * OpenAI's error-file format (`response: null`, `error: {code, message}`), and returns the
 * number of lines in the input file. Idempotent (answered lines are skipped, and the store
 * records each line once), so a finalization interrupted by a crash simply runs it again.
 * Streams the input file: CHUNK lines in memory at a time.
 */
export async function answerExpiredLines(
  store: BatchStore,
  files: FileStore,
  batch: BatchObject,
): Promise<number> {
  const file = await files.tryGet(batch.input_file_id);
  if (!file) return batch.request_counts.total;
  let index = 0;
  let chunk: { index: number; text: string }[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    const answered = await store.lineResults(batch.id, chunk[0]!.index, chunk.length);
    for (const [i, line] of chunk.entries()) {
      if (answered[i] !== null) continue;
      await store.recordExpiredLine(batch.id, line.index, expiredAnswer(line.text));
    }
    chunk = [];
  };
  for await (const text of readLines(files.contentPath(file.id))) {
    if (text.trim() === "") continue;
    chunk.push({ index, text });
    index++;
    if (chunk.length >= CHUNK) await flush();
  }
  await flush();
  return index;
}

function expiredAnswer(text: string) {
  let customId: string | null = null;
  try {
    const parsed = JSON.parse(text) as { custom_id?: unknown } | null;
    if (typeof parsed?.custom_id === "string") customId = parsed.custom_id;
  } catch {
    // not JSON: the error line has no custom_id
  }
  const line = {
    id: `batch_req_${randomBytes(12).toString("hex")}`,
    custom_id: customId,
    response: null,
    error: { code: "batch_expired", message: BATCH_EXPIRED_MESSAGE },
  };
  return { isError: true, line: JSON.stringify(line) };
}

/**
 * One timer per unfinished batch in this gateway, firing `onExpire(id)` at its `expires_at`
 * (unix seconds). Timers are unref'd (they never keep the process alive) and cleared by
 * `clear`. Several gateways may each arm one: expiry itself is a compare-and-set in Redis.
 */
export class ExpiryTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly onExpire: (id: string) => void) {}

  arm(id: string, expiresAt: number): void {
    if (this.timers.has(id)) return;
    const delayMs = Math.max(0, expiresAt * 1000 - Date.now());
    const timer = setTimeout(
      () => {
        this.timers.delete(id);
        if (delayMs > MAX_TIMER_MS) this.arm(id, expiresAt);
        else this.onExpire(id);
      },
      Math.min(delayMs, MAX_TIMER_MS),
    );
    timer.unref();
    this.timers.set(id, timer);
  }

  clear(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
