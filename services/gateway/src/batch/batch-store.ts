import type { Redis } from "ioredis";

export type BatchStatus =
  | "validating"
  | "failed"
  | "in_progress"
  | "finalizing"
  | "completed"
  | "expired"
  | "cancelling"
  | "cancelled";

/** What never changes after creation. */
export interface BatchRecord {
  readonly id: string;
  readonly endpoint: string;
  readonly input_file_id: string;
  readonly completion_window: string;
  readonly metadata: Record<string, string> | null;
  readonly created_at: number;
  readonly expires_at: number;
  readonly owner: string | null;
}

/** OpenAI's batch object. */
export interface BatchObject extends Omit<BatchRecord, "owner"> {
  readonly object: "batch";
  readonly status: BatchStatus;
  readonly errors: {
    object: "list";
    data: { code: string; message: string; line: null; param: null }[];
  } | null;
  readonly output_file_id: string | null;
  readonly error_file_id: string | null;
  readonly in_progress_at: number | null;
  readonly finalizing_at: number | null;
  readonly completed_at: number | null;
  readonly failed_at: number | null;
  readonly expired_at: number | null;
  readonly cancelling_at: number | null;
  readonly cancelled_at: number | null;
  readonly request_counts: { total: number; completed: number; failed: number };
}

/** One line's recorded answer: which file it goes to and its JSONL text. */
export interface LineResult {
  readonly isError: boolean;
  readonly line: string;
}

const PREFIX = "kiln:batch:";
const INDEX_KEY = "kiln:batches";
const STATS_KEY = "kiln:batch-stats";

// Records a line's answer once (HSETNX) and counts it in the same step, so a duplicate
// delivery or a rerun after a crash can neither add a second answer nor count twice.
// A batch that stopped (cancelling, finalizing, ...) takes no more answers, so its files and
// counts always agree.
const RECORD_SCRIPT = `
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'validating' and status ~= 'in_progress' then return {-1, -1} end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
end
local done = tonumber(redis.call('HGET', KEYS[2], 'completed') or '0') + tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
return {done, tonumber(redis.call('HGET', KEYS[2], 'total') or '-1')}
`;

// Moves a batch to ARGV[1] (stamping field ARGV[2] with ARGV[3], and setting 'terminal' to
// ARGV[4] unless it is empty) only from one of ARGV[5..]: one step, so two gateways racing to
// finalize (the last answer vs expiry) agree on how the batch ends.
const TRANSITION_SCRIPT = `
local status = redis.call('HGET', KEYS[1], 'status')
for i = 5, #ARGV do
  if status == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[2], ARGV[3])
    if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'terminal', ARGV[4]) end
    return 1
  end
end
return 0
`;

// An expired batch's unanswered line gets its batch_expired error once (HSETNX, counted as
// failed), whatever the batch's status: finalization may run again after a crash.
const EXPIRE_LINE_SCRIPT = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'failed', 1)
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
end
return 0
`;

const TIMESTAMP_FIELDS = [
  "in_progress_at",
  "finalizing_at",
  "completed_at",
  "failed_at",
  "expired_at",
  "cancelling_at",
  "cancelled_at",
] as const;

/**
 * Batch state in Redis: a hash per batch (record, status, counts, timestamps, file ids), a
 * hash of recorded line answers per batch, and an index of batch ids by creation time. Redis
 * (with AOF) is the source of truth; the gateway keeps nothing a crash could lose.
 */
export class BatchStore {
  constructor(private readonly redis: Redis) {}

  async create(record: BatchRecord): Promise<void> {
    await this.redis
      .multi()
      .hset(key(record.id), {
        record: JSON.stringify(record),
        status: "validating",
        completed: 0,
        failed: 0,
      })
      .zadd(INDEX_KEY, record.created_at, record.id)
      .exec();
  }

  /** The batch and its owner, or null when there is none. */
  async tryGet(id: string): Promise<{ batch: BatchObject; owner: string | null } | null> {
    const hash = await this.redis.hgetall(key(id));
    if (!hash.record) return null;
    const { owner, ...record } = JSON.parse(hash.record) as BatchRecord;
    const num = (field: string) => (hash[field] === undefined ? null : Number(hash[field]));
    const stamps = Object.fromEntries(TIMESTAMP_FIELDS.map((f) => [f, num(f)]));
    const batch = {
      ...record,
      object: "batch",
      status: hash.status as BatchStatus,
      errors: hash.errors ? JSON.parse(hash.errors) : null,
      output_file_id: hash.output_file_id || null,
      error_file_id: hash.error_file_id || null,
      ...stamps,
      request_counts: {
        total: num("total") ?? 0,
        completed: num("completed") ?? 0,
        failed: num("failed") ?? 0,
      },
    } as BatchObject;
    return { batch, owner };
  }

  /** Batch ids, newest first. */
  async listIds(): Promise<string[]> {
    return this.redis.zrevrange(INDEX_KEY, "0", "-1");
  }

  /** Ids of batches a gateway must resume after a restart. */
  async unfinishedIds(): Promise<string[]> {
    const ids = await this.redis.zrange(INDEX_KEY, "0", "-1");
    const statuses = await Promise.all(ids.map((id) => this.redis.hget(key(id), "status")));
    return ids.filter((_, i) =>
      ["validating", "in_progress", "finalizing", "cancelling"].includes(statuses[i] ?? ""),
    );
  }

  async status(id: string): Promise<BatchStatus | null> {
    return (await this.redis.hget(key(id), "status")) as BatchStatus | null;
  }

  /**
   * Moves `id` to `to` if its status is one of `from`; true when it moved. `terminal` (moving
   * to finalizing) records, in the same step, the status the batch will end in.
   */
  async transition(
    id: string,
    from: readonly BatchStatus[],
    to: BatchStatus,
    terminal: "completed" | "expired" | "" = "",
  ): Promise<boolean> {
    const now = String(Math.floor(Date.now() / 1000));
    const moved = await this.redis.eval(
      TRANSITION_SCRIPT,
      1,
      key(id),
      to,
      `${to}_at`,
      now,
      terminal,
      ...from,
    );
    return moved === 1;
  }

  /** Records an expired line's error unless the line already has an answer (counted failed). */
  async recordExpiredLine(id: string, index: number, result: LineResult): Promise<void> {
    await this.redis.eval(
      EXPIRE_LINE_SCRIPT,
      3,
      `${key(id)}:results`,
      key(id),
      STATS_KEY,
      String(index),
      JSON.stringify(result),
    );
  }

  /** The status a finalizing batch ends in (completed unless it expired). */
  async terminal(id: string): Promise<BatchStatus> {
    return ((await this.redis.hget(key(id), "terminal")) as BatchStatus | null) ?? "completed";
  }

  async setFields(id: string, fields: Record<string, string | number>): Promise<void> {
    await this.redis.hset(key(id), fields);
  }

  /**
   * Records line `index`'s answer unless it already has one or the batch stopped taking
   * answers. Returns the number of lines answered so far and the batch's total (-1 while
   * validation has not counted them yet; both -1 when the batch stopped).
   */
  async recordLine(
    id: string,
    index: number,
    result: LineResult,
  ): Promise<{ numDone: number; total: number }> {
    const field = result.isError ? "failed" : "completed";
    const [numDone, total] = (await this.redis.eval(
      RECORD_SCRIPT,
      3,
      `${key(id)}:results`,
      key(id),
      STATS_KEY,
      String(index),
      JSON.stringify(result),
      field,
    )) as [number, number];
    return { numDone, total };
  }

  /** Answers of lines `from..from+count-1` (null where a line has none). */
  async lineResults(id: string, from: number, count: number): Promise<(LineResult | null)[]> {
    if (count <= 0) return [];
    const fields = Array.from({ length: count }, (_, i) => String(from + i));
    const values = await this.redis.hmget(`${key(id)}:results`, ...fields);
    return values.map((v) => (v === null ? null : (JSON.parse(v) as LineResult)));
  }

  /** Lines answered over every batch since Redis started keeping state. */
  async stats(): Promise<{ completed: number; failed: number }> {
    const [completed, failed] = await this.redis.hmget(STATS_KEY, "completed", "failed");
    return { completed: Number(completed ?? 0), failed: Number(failed ?? 0) };
  }
}

function key(id: string): string {
  return `${PREFIX}${id}`;
}
