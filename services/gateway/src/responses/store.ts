import type { Redis } from "ioredis";
import type { ChatMessage } from "../text-codec";

/** A stored response: what GET returns, and the conversation previous_response_id continues. */
export interface StoredResponse {
  /** The Response object as the API returns it. */
  readonly response: Record<string, unknown> & { readonly id: string };
  /** The input items as given (GET /v1/responses/{id}/input_items). */
  readonly inputItems: readonly unknown[];
  /**
   * The conversation as chat messages: the previous responses' turns, this input and this
   * output (never the instructions: OpenAI does not carry them over a chain).
   */
  readonly history: readonly ChatMessage[];
}

/**
 * Where responses with `store: true` live. Implementations bound their size; a response
 * evicted or expired reads as null (404 to clients).
 */
export interface ResponseStore {
  get(id: string): Promise<StoredResponse | null>;
  put(record: StoredResponse): Promise<void>;
  /** True when there was a response to delete. */
  delete(id: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface StoreLimits {
  /** Most responses kept; the oldest is evicted first. */
  readonly maxEntries: number;
  /** Seconds a response is kept after its last write. */
  readonly ttlS: number;
}

/** KILN_RESPONSES_MAX_STORED and KILN_RESPONSES_TTL_S default to these. */
export const DEFAULT_STORE_LIMITS: StoreLimits = { maxEntries: 1000, ttlS: 3600 };

/**
 * The gateway-local store: a Map in insertion order (a write moves an entry to the end), at
 * most `maxEntries` responses, each kept `ttlS` seconds. Lost when the gateway restarts and
 * not shared between gateway replicas: set KILN_REDIS_URL for that.
 */
export class MemoryResponseStore implements ResponseStore {
  private readonly entries = new Map<string, { record: StoredResponse; expiresAtMs: number }>();

  constructor(
    private readonly limits: StoreLimits = DEFAULT_STORE_LIMITS,
    private readonly nowMs: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  async get(id: string): Promise<StoredResponse | null> {
    const entry = this.entries.get(id);
    if (!entry) return null;
    if (entry.expiresAtMs <= this.nowMs()) {
      this.entries.delete(id);
      return null;
    }
    return entry.record;
  }

  async put(record: StoredResponse): Promise<void> {
    const id = record.response.id;
    this.entries.delete(id);
    this.entries.set(id, { record, expiresAtMs: this.nowMs() + this.limits.ttlS * 1000 });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.limits.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  async delete(id: string): Promise<boolean> {
    return (await this.get(id)) !== null && this.entries.delete(id);
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}

const KEY_PREFIX = "kiln:response:";

/**
 * Responses in Redis (`kiln:response:<id>`, JSON, expiring after `ttlS`), shared by every
 * gateway of the cluster. Redis' own maxmemory policy bounds the size; `maxEntries` is not
 * enforced here.
 */
export class RedisResponseStore implements ResponseStore {
  constructor(
    private readonly redis: Redis,
    private readonly limits: StoreLimits = DEFAULT_STORE_LIMITS,
  ) {}

  async get(id: string): Promise<StoredResponse | null> {
    const text = await this.redis.get(KEY_PREFIX + id);
    return text === null ? null : (JSON.parse(text) as StoredResponse);
  }

  async put(record: StoredResponse): Promise<void> {
    const key = KEY_PREFIX + record.response.id;
    await this.redis.set(key, JSON.stringify(record), "EX", this.limits.ttlS);
  }

  async delete(id: string): Promise<boolean> {
    return (await this.redis.del(KEY_PREFIX + id)) > 0;
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => {});
  }
}
