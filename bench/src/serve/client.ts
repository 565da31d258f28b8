import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

/**
 * One streaming request to an OpenAI-compatible endpoint, timed the way vLLM's
 * `benchmark_serving` times it: TTFT is the arrival of the first SSE chunk that carries a
 * choice, every later such chunk adds one inter-token latency (ITL), and the output length
 * is the server's `usage.completion_tokens` (falling back to the number of chunks).
 */

export interface Target {
  /** e.g. http://127.0.0.1:8000 */
  readonly baseUrl: string;
  /** /v1/completions or /v1/chat/completions */
  readonly endpoint: string;
  readonly model: string;
  readonly apiKey: string | null;
  /** Sent as `ignore_eos` so every request produces exactly its output length. */
  readonly ignoreEos: boolean;
}

/** What to send: token ids for completions; text (for servers that need it, and for chat). */
export type Prompt = { readonly ids: readonly number[] } | { readonly text: string };

export interface RequestOutput {
  readonly isSuccess: boolean;
  readonly error: string;
  readonly promptLen: number;
  readonly outputLen: number;
  /** Milliseconds from sending the request to the first chunk; NaN on failure. */
  readonly ttftMs: number;
  /** Gaps between consecutive chunks after the first, in milliseconds. */
  readonly itlMs: readonly number[];
  /** Milliseconds from sending to the end of the stream. */
  readonly latencyMs: number;
  /** When it was sent, in ms since the run started. */
  readonly startMs: number;
}

export const isChatEndpoint = (endpoint: string) => endpoint.endsWith("/chat/completions");

/** The JSON body for one request: greedy, streaming, with usage in the last chunk. */
export function requestBody(target: Target, prompt: Prompt, maxTokens: number): unknown {
  const common = {
    model: target.model,
    max_tokens: maxTokens,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...(target.ignoreEos ? { ignore_eos: true } : {}),
  };
  if (isChatEndpoint(target.endpoint)) {
    if (!("text" in prompt)) throw new Error("chat endpoints need text prompts (--tokenizer)");
    return { ...common, messages: [{ role: "user", content: prompt.text }] };
  }
  return { ...common, prompt: "ids" in prompt ? prompt.ids : prompt.text };
}

const agents = {
  http: new HttpAgent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY }),
  https: new HttpsAgent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY }),
};

function post(url: URL, body: string, apiKey: string | null): Promise<IncomingMessage> {
  const isHttps = url.protocol === "https:";
  const send = isHttps ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        agent: isHttps ? agents.https : agents.http,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          accept: "text/event-stream",
          ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
        },
      },
      resolve,
    );
    req.on("error", reject);
    req.end(body);
  });
}

interface ChunkJson {
  choices?: { delta?: { content?: string | null } }[];
  usage?: { completion_tokens?: number } | null;
  error?: { message?: string };
}

/**
 * Whether a chunk counts as output, as vLLM's clients decide: any chunk with a choice for
 * completions, a chunk with non-empty `delta.content` for chat (so the role-only first delta
 * does not count as the first token).
 */
function hasOutput(json: ChunkJson, isChat: boolean): boolean {
  const choice = json.choices?.[0];
  if (!choice) return false;
  return !isChat || !!choice.delta?.content;
}

/** Sends one request and times it; never throws (failures come back with isSuccess false). */
export async function sendRequest(
  target: Target,
  prompt: Prompt,
  promptLen: number,
  maxTokens: number,
  runStartMs: number,
): Promise<RequestOutput> {
  const started = performance.now();
  const base = { promptLen, startMs: started - runStartMs };
  const failed = (error: string): RequestOutput => ({
    ...base,
    isSuccess: false,
    error,
    outputLen: 0,
    ttftMs: Number.NaN,
    itlMs: [],
    latencyMs: performance.now() - started,
  });
  try {
    const url = new URL(target.endpoint, target.baseUrl);
    const res = await post(
      url,
      JSON.stringify(requestBody(target, prompt, maxTokens)),
      target.apiKey,
    );
    if (res.statusCode !== 200) {
      let text = "";
      for await (const chunk of res) text += chunk;
      return failed(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
    }
    res.setEncoding("utf8");
    let buffer = "";
    let ttftMs = Number.NaN;
    let lastChunkAt = started;
    let numChunks = 0;
    let usageTokens: number | null = null;
    const itlMs: number[] = [];
    const isChat = isChatEndpoint(target.endpoint);
    for await (const piece of res as AsyncIterable<string>) {
      const now = performance.now();
      buffer += piece;
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (data === "" || data === "[DONE]") continue;
        const json = JSON.parse(data) as ChunkJson;
        if (json.error) return failed(`stream error: ${json.error.message ?? data}`);
        if (json.usage?.completion_tokens !== undefined) usageTokens = json.usage.completion_tokens;
        if (!hasOutput(json, isChat)) continue;
        if (numChunks === 0) ttftMs = now - started;
        else itlMs.push(now - lastChunkAt);
        lastChunkAt = now;
        numChunks++;
      }
    }
    if (numChunks === 0) return failed("the stream ended without any output");
    return {
      ...base,
      isSuccess: true,
      error: "",
      outputLen: usageTokens ?? numChunks,
      ttftMs,
      itlMs,
      latencyMs: performance.now() - started,
    };
  } catch (err) {
    return failed(err instanceof Error ? err.message : String(err));
  }
}

/** The first model the server lists, for when --model is not given. */
export async function firstServedModel(baseUrl: string, apiKey: string | null): Promise<string> {
  const res = await fetch(new URL("/v1/models", baseUrl), {
    headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
  });
  const body = (await res.json()) as { data?: { id: string }[] };
  const id = body.data?.[0]?.id;
  if (!res.ok || !id) throw new Error(`GET /v1/models on ${baseUrl} gave no model; pass --model`);
  return id;
}
