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

  start(): void {
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
  }

  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** A named event, `event: <name>` then its data (the Responses API's framing). */
  async sendEvent(name: string, data: unknown): Promise<void> {
    await this.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private async write(text: string): Promise<void> {
    if (this.isClosed) return;
    if (this.res.write(text)) return;
    // Wait for room, or for the client to leave; drop the losing listener either way.
    const ac = new AbortController();
    await Promise.race([
      once(this.res, "drain", { signal: ac.signal }),
      once(this.res, "close", { signal: ac.signal }),
    ]).catch(() => {});
    ac.abort();
  }

  /** Ends the stream; `[DONE]` unless `isDoneSent` is false (the Responses API sends none). */
  end(isDoneSent = true): void {
    if (this.isClosed) return;
    this.res.end(isDoneSent ? "data: [DONE]\n\n" : undefined);
  }
}
