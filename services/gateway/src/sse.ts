import type { ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";

/** Default bound on what one SSE response may have queued unsent (KILN_MAX_STREAM_BUFFER_BYTES). */
export const DEFAULT_MAX_STREAM_BUFFER_BYTES = 1024 * 1024;

/** The stream bound and a count of clients cut off for reading too slowly (for metrics). */
export interface StreamLimits {
  readonly maxBufferBytes: number;
  numSlowReadersCutOff: number;
}

declare module "fastify" {
  interface FastifyInstance {
    kilnStreamLimits: StreamLimits;
  }
}

/** Makes `maxBufferBytes` the bound of every SSE response the app sends. */
export function installStreamLimits(app: FastifyInstance, maxBufferBytes: number): StreamLimits {
  const limits: StreamLimits = { maxBufferBytes, numSlowReadersCutOff: 0 };
  app.decorate("kilnStreamLimits", limits);
  return limits;
}

/**
 * Server-sent events in OpenAI's framing: `data: {json}\n\n` per chunk, then `data: [DONE]`.
 *
 * Writes never wait for the client. The gateway must keep reading the router's stream at the
 * router's pace: waiting on one slow reader would leave its events buffered in the shared
 * gateway↔router HTTP/2 session (and in the router), which is how one slow client hurts all
 * the others. Instead, what a client has not yet read is bounded: once more than
 * `limits.maxBufferBytes` is queued on its connection, the client is cut off (the connection
 * is destroyed), which aborts its request end to end and frees its KV blocks. Writes after
 * the client left are dropped.
 */
export class SseWriter {
  private isCutOff = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly limits: StreamLimits = {
      maxBufferBytes: DEFAULT_MAX_STREAM_BUFFER_BYTES,
      numSlowReadersCutOff: 0,
    },
  ) {}

  get isClosed(): boolean {
    return this.isCutOff || this.res.destroyed || this.res.writableEnded;
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

  /** Queues one event; async only so callers may await it alike with other writers. */
  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** A named event, `event: <name>` then its data (the Responses API's framing). */
  async sendEvent(name: string, data: unknown): Promise<void> {
    await this.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private async write(text: string): Promise<void> {
    if (this.isClosed) return;
    this.res.write(text);
    // writableLength: bytes queued in the response and in its socket, not yet sent.
    if (this.res.writableLength > this.limits.maxBufferBytes) this.cutOff();
  }

  /** Ends the stream; `[DONE]` unless `isDoneSent` is false (the Responses API sends none). */
  end(isDoneSent = true): void {
    if (this.isClosed) return;
    this.res.end(isDoneSent ? "data: [DONE]\n\n" : undefined);
  }

  private cutOff(): void {
    this.isCutOff = true;
    this.limits.numSlowReadersCutOff++;
    this.res.destroy();
  }
}
