import type { TenantConfig } from "./keys-file";

/**
 * A per-minute allowance refilled continuously (a token bucket holding one minute's worth).
 * `clock` is in ms. Refunds never raise it above its capacity.
 */
class MinuteBucket {
  private level: number;
  private lastMs: number;

  constructor(
    readonly capacity: number,
    private readonly clock: () => number,
  ) {
    this.level = capacity;
    this.lastMs = clock();
  }

  private refill(): void {
    const now = this.clock();
    this.level = Math.min(
      this.capacity,
      this.level + ((now - this.lastMs) * this.capacity) / 60_000,
    );
    this.lastMs = now;
  }

  /** Whole units left now. */
  remaining(): number {
    this.refill();
    return Math.floor(this.level);
  }

  /** Ms until `amount` units are available (0 when they are). */
  msUntil(amount: number): number {
    this.refill();
    return amount <= this.level ? 0 : Math.ceil(((amount - this.level) * 60_000) / this.capacity);
  }

  /** Ms until the bucket is full again (OpenAI's `x-ratelimit-reset-*`). */
  msUntilFull(): number {
    return this.msUntil(this.capacity);
  }

  take(amount: number): void {
    this.refill();
    this.level -= amount;
  }

  refund(amount: number): void {
    this.refill();
    this.level = Math.min(this.capacity, this.level + amount);
  }
}

/** Which limit refused a request. */
export type LimitKind = "requests" | "tokens" | "concurrency";

/** The outcome of `tryAcquire`: a lease to settle, or why not and for how long. */
export type Acquisition =
  | { readonly isAdmitted: true; readonly lease: Lease; readonly headers: RateLimitHeaders }
  | {
      readonly isAdmitted: false;
      readonly kind: LimitKind;
      readonly retryAfterMs: number;
      readonly message: string;
      readonly headers: RateLimitHeaders;
    };

/** OpenAI's `x-ratelimit-*` headers for the limits the tenant has. */
export type RateLimitHeaders = Record<string, string>;

/** Reserved capacity of one admitted request; `settle` exactly once. */
export interface Lease {
  /** Returns the unused part of the token reservation and the concurrency slot. */
  settle(numUsedTokens: number): void;
}

/** One tenant's limits. State is in memory (per gateway process). */
export class TenantLimiter {
  private readonly requests: MinuteBucket | null;
  private readonly tokens: MinuteBucket | null;
  private numActive = 0;

  constructor(
    readonly tenant: TenantConfig,
    clock: () => number,
  ) {
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = tenant;
    this.requests = rpm === null ? null : new MinuteBucket(rpm, clock);
    this.tokens = tpm === null ? null : new MinuteBucket(tpm, clock);
  }

  /**
   * Admits a request reserving `numTokens` (prompt + max_tokens), or says which limit refused
   * it. Nothing is taken on refusal.
   */
  tryAcquire(numTokens: number): Acquisition {
    const maxConcurrent = this.tenant.maxConcurrentRequests;
    const refusal = this.refusal(numTokens, maxConcurrent);
    if (refusal !== null) return { isAdmitted: false, ...refusal, headers: this.headers() };
    this.requests?.take(1);
    this.tokens?.take(numTokens);
    this.numActive++;
    let isSettled = false;
    const lease: Lease = {
      settle: (numUsedTokens) => {
        if (isSettled) return;
        isSettled = true;
        this.numActive--;
        this.tokens?.refund(Math.max(0, numTokens - numUsedTokens));
      },
    };
    return { isAdmitted: true, lease, headers: this.headers() };
  }

  get numActiveRequests(): number {
    return this.numActive;
  }

  private refusal(numTokens: number, maxConcurrent: number | null) {
    if (this.requests !== null && this.requests.msUntil(1) > 0) {
      const retryAfterMs = this.requests.msUntil(1);
      const message = `Rate limit reached for requests: limit ${this.requests.capacity} per minute.`;
      return { kind: "requests" as const, retryAfterMs, message };
    }
    if (this.tokens !== null && numTokens > this.tokens.capacity) {
      const message =
        `Request too large: it reserves ${numTokens} tokens (prompt + max_tokens) but the limit ` +
        `is ${this.tokens.capacity} tokens per minute. Reduce max_tokens or the prompt.`;
      return { kind: "tokens" as const, retryAfterMs: 60_000, message };
    }
    if (this.tokens !== null && this.tokens.msUntil(numTokens) > 0) {
      const retryAfterMs = this.tokens.msUntil(numTokens);
      const message =
        `Rate limit reached for tokens: limit ${this.tokens.capacity} per minute, ` +
        `${this.tokens.remaining()} left, this request reserves ${numTokens}.`;
      return { kind: "tokens" as const, retryAfterMs, message };
    }
    if (maxConcurrent !== null && this.numActive >= maxConcurrent) {
      const message = `Too many concurrent requests: limit ${maxConcurrent}.`;
      return { kind: "concurrency" as const, retryAfterMs: 1000, message };
    }
    return null;
  }

  /** `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the limits configured. */
  headers(): RateLimitHeaders {
    const out: RateLimitHeaders = {};
    for (const [name, bucket] of [
      ["requests", this.requests],
      ["tokens", this.tokens],
    ] as const) {
      if (bucket === null) continue;
      out[`x-ratelimit-limit-${name}`] = String(bucket.capacity);
      out[`x-ratelimit-remaining-${name}`] = String(Math.max(0, bucket.remaining()));
      out[`x-ratelimit-reset-${name}`] = `${(bucket.msUntilFull() / 1000).toFixed(3)}s`;
    }
    return out;
  }
}
