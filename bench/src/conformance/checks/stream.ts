import { expect } from "../check";
import type { SseReply } from "../http";
import { assertSchema, type SchemaName } from "../validate";

/** Validates a chat/completions stream: 200 SSE, every chunk against `schema`, then [DONE]. */
export function streamChunks<T>(reply: SseReply, schema: SchemaName): T[] {
  expect(
    reply.status === 200,
    `stream: HTTP ${reply.status} ${JSON.stringify(reply.body).slice(0, 200)}`,
  );
  expect(reply.contentType.includes("text/event-stream"), `content-type ${reply.contentType}`);
  const events = reply.events;
  expect(events.at(-1)?.data === "[DONE]", "stream does not end with data: [DONE]");
  return events.slice(0, -1).map((e, i) => {
    const chunk = JSON.parse(e.data) as T;
    assertSchema(schema, chunk, `chunk ${i}`);
    return chunk;
  });
}
