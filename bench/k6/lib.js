// Shared pieces of Kiln's k6 scripts: configuration from the environment, one streaming chat
// request, and the custom metrics it records.
//
// k6's http client returns a streamed (SSE) body only once the stream has ended, so:
//   ttft  = timings.waiting (time to the first byte). Kiln's gateway sends its 200 and the
//           first SSE chunk only once the first token exists, so this is the time to first
//           token. Servers that flush headers early will look faster than they are.
//   tpot  = (duration − waiting) / (chunks with content − 1), per request.
//   e2e   = http_req_duration of the streaming request.
import { check } from "k6";
import http from "k6/http";
import { Counter, Rate, Trend } from "k6/metrics";

export const config = {
  baseUrl: (__ENV.KILN_URL || "http://127.0.0.1:8000").replace(/\/+$/, ""),
  apiKey: __ENV.KILN_API_KEY || "",
  model: __ENV.KILN_MODEL || "llama-110m",
  maxTokens: Number(__ENV.MAX_TOKENS || 64),
  prompt:
    __ENV.PROMPT ||
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
  // Thresholds (milliseconds unless noted), overridable per run.
  ttftP95Ms: Number(__ENV.TTFT_P95_MS || 2000),
  tpotP95Ms: Number(__ENV.TPOT_P95_MS || 200),
  latencyP95Ms: Number(__ENV.LATENCY_P95_MS || 30000),
  maxErrorRate: Number(__ENV.MAX_ERROR_RATE || 0.01),
};

export const ttft = new Trend("ttft", true);
export const tpot = new Trend("tpot", true);
export const errors = new Rate("errors");
export const outputChunks = new Counter("output_chunks");

/** The thresholds every script applies: TTFT, TPOT, end-to-end latency and error rate. */
export function thresholds() {
  return {
    ttft: [`p(95)<${config.ttftP95Ms}`],
    tpot: [`p(95)<${config.tpotP95Ms}`],
    http_req_duration: [`p(95)<${config.latencyP95Ms}`],
    // Abort a run that is mostly failing instead of hammering a broken server for minutes.
    errors: [
      { threshold: `rate<${config.maxErrorRate}`, abortOnFail: true, delayAbortEval: "30s" },
    ],
  };
}

/** Counts SSE chunks that carry generated text; -1 when the stream reported an error. */
function countContentChunks(body) {
  let numChunks = 0;
  for (const event of body.split("\n\n")) {
    if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
    const json = JSON.parse(event.slice(6));
    if (json.error) return -1;
    const choice = json.choices?.[0];
    if (choice?.delta?.content) numChunks++;
  }
  return numChunks;
}

/** One streaming chat completion; records ttft, tpot, errors and output_chunks. */
export function streamChat() {
  const headers = { "Content-Type": "application/json" };
  if (config.apiKey) headers.Authorization = `Bearer ${config.apiKey}`;
  const body = JSON.stringify({
    model: config.model,
    messages: [{ role: "user", content: config.prompt }],
    max_tokens: config.maxTokens,
    stream: true,
  });
  const res = http.post(`${config.baseUrl}/v1/chat/completions`, body, {
    headers,
    timeout: "120s",
    tags: { name: "chat-stream" },
  });
  const numChunks = res.status === 200 && res.body ? countContentChunks(res.body) : -1;
  const ok = check(res, {
    "status is 200": (r) => r.status === 200,
    "stream ends with [DONE]": (r) => typeof r.body === "string" && r.body.includes("data: [DONE]"),
    "no error event": () => numChunks >= 0,
  });
  errors.add(!ok);
  if (!ok) return;
  ttft.add(res.timings.waiting);
  outputChunks.add(numChunks);
  if (numChunks > 1) tpot.add((res.timings.duration - res.timings.waiting) / (numChunks - 1));
}
