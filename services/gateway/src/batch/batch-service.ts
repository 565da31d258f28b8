import { randomBytes } from "node:crypto";
import { KilnError } from "@kiln/proto";
import type { Registry } from "@kiln/telemetry";
import { type Job, Queue, Worker } from "bullmq";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { type BatchObject, type BatchRecord, type BatchStatus, BatchStore } from "./batch-store";
import type { BatchConfig } from "./config";
import { answerExpiredLines, ExpiryTimers } from "./expiry";
import type { FileStore, UploadLimits } from "./file-store";
import { InteractiveLoad } from "./interactive-yield";
import { runLine } from "./line-runner";
import { registerBatchMetrics } from "./metrics";
import { readLines } from "./read-lines";
import { writeResultFiles } from "./result-files";

export const BATCH_QUEUE = "kiln-batch-lines";
export const BATCH_ENDPOINTS = ["/v1/chat/completions", "/v1/completions"];
const ENQUEUE_CHUNK = 500;
const RESUME_TRIES = 5;

/** One queued line: which batch, which line, and the line's text. */
interface LineJob {
  readonly batchId: string;
  readonly index: number;
  readonly text: string;
}

export interface CreateBatchParams {
  readonly inputFileId: string;
  readonly endpoint: string;
  readonly completionWindow: string;
  readonly metadata: Record<string, string> | null;
  readonly owner: string | null;
}

/**
 * The batch service: batches' state in Redis (BatchStore), one BullMQ job per input line, and
 * a BullMQ worker in this gateway that runs lines through the gateway's own routes at the
 * batch priority class.
 *
 * Exactly once: a line's answer is recorded in Redis (HSETNX, with its count) before anything
 * is written to a file, and the output and error files are written only at finalization from
 * the recorded answers, in line order. A line run twice (gateway killed mid-line, duplicate
 * delivery, a rerun after recovery) therefore still has one answer. After a restart
 * `start()` re-enqueues the lines of unfinished batches that have no answer (job ids are
 * `<batch>_<line>`, so lines still queued are not duplicated) and finishes interrupted
 * finalizations.
 */
export class BatchService {
  readonly store: BatchStore;
  private readonly queue: Queue;
  private worker: Worker | null = null;
  private app: FastifyInstance | null = null;
  /** Lines running here, per batch, so cancel can abort them. */
  private readonly running = new Map<string, Set<AbortController>>();
  private readonly connections: Redis[] = [];
  /** Interactive generations in this gateway: batch lines drop to busyConcurrency meanwhile. */
  readonly interactive = new InteractiveLoad((isBusy) => {
    if (this.worker === null) return;
    const { busyConcurrency, concurrency } = this.config;
    this.worker.concurrency = isBusy ? Math.min(busyConcurrency, concurrency) : concurrency;
  });
  private readonly expiry = new ExpiryTimers((id) => {
    void this.expire(id).catch((err: unknown) => this.log(`expire ${id}: ${String(err)}`));
  });

  constructor(
    private readonly config: BatchConfig & { redisUrl: string },
    readonly files: FileStore,
    private readonly log: (message: string) => void,
  ) {
    const storeRedis = this.connect();
    this.store = new BatchStore(storeRedis);
    this.queue = new Queue(BATCH_QUEUE, { connection: this.connect() });
    this.queue.on("error", (err) => this.log(`batch queue: ${err.message}`));
  }

  private connect(): Redis {
    const redis = new Redis(this.config.redisUrl, {
      maxRetriesPerRequest: null,
      lazyConnect: false,
    });
    redis.on("error", () => {}); // reconnects on its own; commands wait meanwhile
    this.connections.push(redis);
    return redis;
  }

  /** Upload limits for the Files API. */
  get limits(): UploadLimits {
    return { maxBytes: this.config.maxFileBytes, maxLines: this.config.maxFileLines };
  }

  /** Adds the batch gauges (read from Redis at each scrape) to `registry`. */
  registerMetrics(registry: Registry): void {
    registerBatchMetrics(registry, this.queue, this.store);
  }

  /** Starts running lines through `app` and resumes unfinished batches. */
  async start(app: FastifyInstance): Promise<void> {
    this.app = app;
    await this.files.init();
    this.worker = new Worker(BATCH_QUEUE, (job: Job<LineJob>) => this.processLine(job), {
      connection: this.connect(),
      concurrency: this.config.concurrency,
      lockDuration: this.config.lockMs,
      stalledInterval: this.config.lockMs,
      maxStalledCount: this.config.maxAttempts,
    });
    this.worker.on("error", (err) => this.log(`batch worker: ${err.message}`));
    for (const id of await this.store.unfinishedIds()) void this.resumeWithRetry(id);
  }

  /** Stops taking lines; running ones are aborted and will be redelivered (lock expiry). */
  async close(): Promise<void> {
    this.expiry.clear();
    this.interactive.close();
    for (const set of this.running.values()) for (const c of set) c.abort();
    await this.worker?.close(true);
    await this.queue.close();
    for (const redis of this.connections) redis.disconnect();
  }

  async create(params: CreateBatchParams): Promise<BatchObject> {
    const now = Math.floor(Date.now() / 1000);
    const record: BatchRecord = {
      id: `batch_${randomBytes(12).toString("hex")}`,
      endpoint: params.endpoint,
      input_file_id: params.inputFileId,
      completion_window: params.completionWindow,
      metadata: params.metadata,
      created_at: now,
      expires_at: now + this.config.completionWindowS,
      owner: params.owner,
    };
    await this.store.create(record);
    void this.resumeWithRetry(record.id);
    return (await this.store.tryGet(record.id))!.batch;
  }

  /** Requests cancellation: lines not yet run are skipped, running ones aborted. */
  async cancel(id: string): Promise<void> {
    const isCancelling = await this.store.transition(
      id,
      ["validating", "in_progress"],
      "cancelling",
    );
    if (!isCancelling) return;
    for (const controller of this.running.get(id) ?? []) controller.abort();
    void this.finish(id).catch((err: unknown) => this.log(`cancel ${id}: ${String(err)}`));
  }

  /** `resume`, tried again after a failure (Redis briefly away) up to RESUME_TRIES times. */
  private async resumeWithRetry(id: string): Promise<void> {
    for (let attempt = 1; attempt <= RESUME_TRIES; attempt++) {
      try {
        await this.resume(id);
        return;
      } catch (err) {
        this.log(`batch ${id}: ${String(err)} (try ${attempt} of ${RESUME_TRIES})`);
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
  }

  /** Whatever step an unfinished batch was interrupted in, carries on from there. */
  private async resume(id: string): Promise<void> {
    const status = await this.store.status(id);
    if (status === "validating" || status === "in_progress") {
      const found = await this.store.tryGet(id);
      if (found) this.expiry.arm(id, found.batch.expires_at);
      await this.enqueueUnanswered(id);
    } else if (status === "finalizing" || status === "cancelling") await this.finish(id);
  }

  /**
   * Streams the input file and queues every line that has no answer yet; then records the
   * total and moves the batch to in_progress. Safe to run again at any time.
   */
  private async enqueueUnanswered(id: string): Promise<void> {
    const found = await this.store.tryGet(id);
    if (!found) return;
    const { batch } = found;
    const file = await this.files.tryGet(batch.input_file_id);
    if (!file) {
      await this.failBatch(
        id,
        "missing_file",
        `The input file ${batch.input_file_id} no longer exists.`,
      );
      return;
    }
    const lines = readLines(this.files.contentPath(file.id));
    let index = 0;
    let chunk: LineJob[] = [];
    const flush = async () => {
      if (chunk.length === 0) return;
      const answered = await this.store.lineResults(id, chunk[0]?.index ?? 0, chunk.length);
      const jobs = chunk.filter((_, i) => answered[i] === null);
      chunk = [];
      if (jobs.length === 0) return;
      await this.queue.addBulk(
        jobs.map((data) => ({
          name: "line",
          data,
          opts: {
            jobId: `${id}_${data.index}`,
            attempts: this.config.maxAttempts,
            backoff: { type: "exponential", delay: 250 },
            removeOnComplete: true,
            removeOnFail: true,
          },
        })),
      );
    };
    for await (const text of lines) {
      if (text.trim() === "") continue;
      chunk.push({ batchId: id, index, text });
      index++;
      if (chunk.length >= ENQUEUE_CHUNK) await flush();
    }
    await flush();
    if (index === 0) {
      await this.failBatch(id, "empty_file", "The input file has no requests.");
      return;
    }
    await this.store.setFields(id, { total: index });
    await this.store.transition(id, ["validating"], "in_progress");
    const counts = (await this.store.tryGet(id))?.batch.request_counts;
    if (counts && counts.completed + counts.failed >= index) await this.startFinalizing(id);
  }

  private async failBatch(id: string, code: string, message: string): Promise<void> {
    await this.store.setFields(id, {
      errors: JSON.stringify({
        object: "list",
        data: [{ code, message, line: null, param: null }],
      }),
    });
    await this.store.transition(id, ["validating", "in_progress"], "failed");
  }

  /** One BullMQ job: runs the line unless its batch stopped or it already has an answer. */
  private async processLine(job: Job<LineJob>): Promise<void> {
    const { batchId, index, text } = job.data;
    const found = await this.store.tryGet(batchId);
    if (!found || !["validating", "in_progress"].includes(found.batch.status)) return;
    if (Date.now() / 1000 >= found.batch.expires_at) {
      await this.expire(batchId);
      return;
    }
    const [existing] = await this.store.lineResults(batchId, index, 1);
    if (existing) return; // a duplicate delivery of a line already answered
    const controller = new AbortController();
    const set = this.running.get(batchId) ?? new Set();
    this.running.set(batchId, set.add(controller));
    try {
      const attempt = await runLine(this.app!, found.batch.endpoint, text, controller.signal);
      if (controller.signal.aborted) {
        // Cancelled: no answer. Shutting down: fail this try so BullMQ runs the line again.
        if ((await this.store.status(batchId)) !== "in_progress") return;
        throw new Error(`line ${index} of ${batchId}: interrupted by shutdown`);
      }
      if (attempt.isRetryable && job.attemptsMade + 1 < this.config.maxAttempts) {
        throw new Error(`line ${index} of ${batchId}: retryable status, will retry`);
      }
      const { numDone, total } = await this.store.recordLine(batchId, index, attempt.result);
      if (total >= 0 && numDone >= total) await this.startFinalizing(batchId);
    } finally {
      set.delete(controller);
      if (set.size === 0) this.running.delete(batchId);
    }
  }

  private async startFinalizing(id: string) {
    if (await this.store.transition(id, ["in_progress"], "finalizing", "completed")) {
      await this.finish(id);
    }
  }

  /**
   * The completion window has passed: the batch stops taking answers (running lines here are
   * aborted; elsewhere their answers are refused), and finalization gives every unanswered
   * line a batch_expired error. A no-op unless the batch is still validating or in progress.
   */
  private async expire(id: string): Promise<void> {
    const from = ["validating", "in_progress"] as const;
    if (!(await this.store.transition(id, from, "finalizing", "expired"))) return;
    for (const controller of this.running.get(id) ?? []) controller.abort();
    await this.finish(id);
  }

  /** Writes the result files from the recorded answers and moves to the terminal status. */
  private async finish(id: string): Promise<void> {
    const found = await this.store.tryGet(id);
    if (!found) return;
    const from: BatchStatus = found.batch.status;
    if (from !== "finalizing" && from !== "cancelling") return;
    const terminal = from === "cancelling" ? "cancelled" : await this.store.terminal(id);
    let total = found.batch.request_counts.total;
    if (terminal === "expired") {
      total = await answerExpiredLines(this.store, this.files, found.batch);
      await this.store.setFields(id, { total });
    }
    const ids = await writeResultFiles(this.store, this.files, id, total, found.owner);
    await this.store.setFields(id, {
      output_file_id: ids.outputFileId ?? "",
      error_file_id: ids.errorFileId ?? "",
    });
    await this.store.transition(id, [from], terminal);
  }
}

export function checkEndpoint(endpoint: unknown): string {
  if (typeof endpoint !== "string" || !BATCH_ENDPOINTS.includes(endpoint)) {
    throw new KilnError(
      "INVALID_REQUEST",
      `Unsupported endpoint ${JSON.stringify(endpoint)}; Kiln batches support ${BATCH_ENDPOINTS.join(" and ")}.`,
      "endpoint",
    );
  }
  return endpoint;
}
