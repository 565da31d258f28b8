import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type RunningRedis,
  type ServiceProcess,
  startRedis,
  startServiceProcess,
} from "@kiln/cluster";
import { REPO_ROOT, STORIES_DIR } from "@kiln/test-support";
import OpenAI from "openai";

export const MODEL = "stories260K";

/**
 * Router, worker and a batch-enabled gateway as real processes, plus a Redis (AOF) this
 * helper starts, all on one data directory. Each can be killed (-9) and started again (same
 * data dir, same Redis and router ports) to test recovery.
 */
export class BatchStack {
  gateway!: ServiceProcess;
  redis!: RunningRedis;
  private router!: ServiceProcess;
  private worker!: ServiceProcess;
  readonly logs: string[] = [];

  constructor(readonly dataDir: string) {}

  /** `gatewayEnv`: extra settings of every gateway this stack starts. */
  static async start(gatewayEnv: NodeJS.ProcessEnv = {}): Promise<BatchStack> {
    const stack = new BatchStack(mkdtempSync(join(tmpdir(), "kiln-batch-")));
    stack.gatewayEnv = gatewayEnv;
    const log = (line: string) => stack.logs.push(line);
    stack.redis = await startRedis(stack.dataDir, log);
    stack.router = await service("router", ["--host", "127.0.0.1", "--port", "0"]);
    await stack.startWorker();
    await stack.startGateway();
    return stack;
  }

  private gatewayEnv: NodeJS.ProcessEnv = {};

  private async startWorker(): Promise<void> {
    this.worker = await service(
      "worker",
      ["--model", STORIES_DIR, "--router", this.routerAddress],
      { KILN_KV_CACHE_MEMORY: "64MiB" },
    );
  }

  /** kill -9 of the router, then a new router on the same port (the worker re-registers). */
  async restartRouter(): Promise<void> {
    const port = this.router.port;
    await this.router.kill();
    this.router = await service("router", ["--host", "127.0.0.1", "--port", String(port)]);
  }

  /** kill -9 of the worker, then a new worker registering with the router. */
  async restartWorker(): Promise<void> {
    await this.worker.kill();
    await this.startWorker();
  }

  get routerAddress(): string {
    return `127.0.0.1:${this.router.port}`;
  }

  client(): OpenAI {
    const baseURL = `http://127.0.0.1:${this.gateway.port}/v1`;
    return new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  }

  async startGateway(env: NodeJS.ProcessEnv = {}): Promise<void> {
    this.gateway = await service(
      "gateway",
      [
        "--model",
        STORIES_DIR,
        "--router",
        this.routerAddress,
        "--port",
        "0",
        "--drain-timeout",
        "2",
      ],
      {
        KILN_REDIS_URL: this.redis.url,
        KILN_DATA_DIR: this.dataDir,
        KILN_BATCH_LOCK_MS: "1500",
        KILN_BATCH_CONCURRENCY: "4",
        ...this.gatewayEnv,
        ...env,
      },
    );
  }

  /** kill -9 of Redis, then a new redis-server on the same port and AOF. */
  async restartRedis(): Promise<void> {
    await this.redis.child.stop("SIGKILL", 0);
    this.redis = await startRedis(this.dataDir, (line) => this.logs.push(line), this.redis.port);
  }

  async stop(): Promise<void> {
    await Promise.allSettled([this.gateway?.stop()]);
    await Promise.allSettled([this.worker?.stop(), this.router?.stop(), this.redis?.stop()]);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function service(name: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const script = join(REPO_ROOT, `services/${name}/src/main.ts`);
  return startServiceProcess(name, script, { args, cwd: REPO_ROOT, env, timeoutMs: 60_000 });
}

/** A JSONL file of batch lines. */
export function jsonl(lines: readonly unknown[]): string {
  return `${lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n")}\n`;
}

/** Polls the batch until it reaches a terminal status. */
export async function waitForBatch(client: OpenAI, id: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await client.batches.retrieve(id);
    if (["completed", "failed", "expired", "cancelled"].includes(batch.status)) return batch;
    if (Date.now() > deadline)
      throw new Error(`batch ${id} still ${batch.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One line of a batch's output or error file. */
export interface BatchResultLine {
  readonly id: string;
  readonly custom_id: string | null;
  readonly response: {
    readonly status_code: number;
    readonly request_id: string;
    readonly body: {
      readonly choices?: readonly { readonly text: string }[];
      readonly error?: { readonly code: string | null; readonly param: string | null };
    };
  };
  readonly error: null;
}

/** The JSON lines of a file's content. */
export async function readJsonl(client: OpenAI, fileId: string): Promise<BatchResultLine[]> {
  const text = await (await client.files.content(fileId)).text();
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as BatchResultLine);
}
