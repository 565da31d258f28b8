import { once } from "node:events";
import type { ServerResponse } from "node:http";

/**
 * Server-sent events in OpenAI's framing: `data: {json}\n\n` per chunk, then `data: [DONE]`.
 * Writes respect backpressure; writes after the client left are dropped.
 */
export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  get isClosed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Sends the 200 head; `headers` (the reply's own, such as x-ratelimit-*) go with it. */
  start(headers: Record<string, unknown> = {}): void {
    this.res.writeHead(200, {
      ...(headers as Record<string, string>),
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
  }

  async send(data: unknown): Promise<void> {
    if (this.isClosed) return;
    if (this.res.write(`data: ${JSON.stringify(data)}\n\n`)) return;
    // Wait for room, or for the client to leave; drop the losing listener either way.
    const ac = new AbortController();
    await Promise.race([
      once(this.res, "drain", { signal: ac.signal }),
      once(this.res, "close", { signal: ac.signal }),
    ]).catch(() => {});
    ac.abort();
  }

  end(): void {
    if (this.isClosed) return;
    this.res.end("data: [DONE]\n\n");
  }
}
