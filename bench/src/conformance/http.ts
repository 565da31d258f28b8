/** Raw HTTP against the server under test: JSON bodies and SSE streams as sent on the wire. */

export interface Target {
  /** Server origin plus optional path prefix, without `/v1` (`http://127.0.0.1:8000`). */
  readonly origin: string;
  readonly model: string;
  readonly apiKey: string;
  /** Per-request timeout in milliseconds. */
  readonly timeoutMs: number;
}

export interface JsonReply {
  readonly status: number;
  readonly body: unknown;
}

function headers(target: Target): Record<string, string> {
  return { "content-type": "application/json", authorization: `Bearer ${target.apiKey}` };
}

export async function requestJson(
  target: Target,
  method: string,
  path: string,
  body?: unknown,
): Promise<JsonReply> {
  const res = await fetch(`${target.origin}${path}`, {
    method,
    headers: headers(target),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(target.timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Left as text: the check reports it.
  }
  return { status: res.status, body: parsed };
}

/** One server-sent event: its `event:` name (null when absent) and `data:` payload. */
export interface SseEvent {
  readonly event: string | null;
  readonly data: string;
}

export interface SseReply {
  readonly status: number;
  readonly contentType: string;
  readonly events: readonly SseEvent[];
  /** The body when the status is not 200 (an error body). */
  readonly body: unknown;
}

export async function requestSse(target: Target, path: string, body: unknown): Promise<SseReply> {
  const res = await fetch(`${target.origin}${path}`, {
    method: "POST",
    headers: headers(target),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(target.timeoutMs),
  });
  const text = await res.text();
  const contentType = res.headers.get("content-type") ?? "";
  if (res.status !== 200 || !contentType.includes("text/event-stream")) {
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, contentType, events: [], body: parsed };
  }
  return { status: res.status, contentType, events: parseSse(text), body: null };
}

/** Splits an SSE body into events (blank-line separated; `data:` lines joined by "\n"). */
export function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.replace(/\r\n/g, "\n").split("\n\n")) {
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length > 0) out.push({ event, data: data.join("\n") });
  }
  return out;
}
