import http from "node:http";

/** How one streaming request ended, as the flood benchmark and test count it. */
export type StreamOutcome = "ok" | "429" | "503" | "cut off" | "500" | "reset" | "other";

export interface StreamResult {
  readonly outcome: StreamOutcome;
  /** ms from sending the request to the first generated text; null when none came. */
  readonly ttftMs: number | null;
  /** The end of the body for outcomes other than ok (what the error said). */
  readonly detail: string | null;
}

export interface StreamSpec {
  readonly port: number;
  readonly body: string;
  /** A slow reader reads nothing for `slowPauseMs`, then drains. */
  readonly isSlow: boolean;
  readonly slowPauseMs: number;
}

/** One streaming request over its own connection (`agent` without keep-alive). */
export function runStream(spec: StreamSpec, agent: http.Agent): Promise<StreamResult> {
  const startedAt = performance.now();
  let ttftMs: number | null = null;
  return new Promise((resolve) => {
    let text = "";
    const done = (outcome: StreamOutcome) =>
      resolve({ outcome, ttftMs, detail: outcome === "ok" ? null : text.slice(-300) });
    const req = http.request(
      { host: "127.0.0.1", port: spec.port, path: "/v1/completions", method: "POST", agent },
      (res) => {
        res.setEncoding("utf8");
        if (spec.isSlow) {
          res.pause();
          setTimeout(() => res.resume(), spec.slowPauseMs);
        }
        res.on("data", (chunk: string) => {
          if (ttftMs === null && chunk.includes('"text"')) ttftMs = performance.now() - startedAt;
          text += chunk;
        });
        res.on("error", () => done(spec.isSlow ? "cut off" : "reset"));
        res.on("end", () => done(classify(res.statusCode ?? 0, text, spec.isSlow)));
      },
    );
    req.on("error", () => done(spec.isSlow ? "cut off" : "reset"));
    req.setHeader("content-type", "application/json");
    req.end(spec.body);
  });
}

function classify(status: number, text: string, isSlow: boolean): StreamOutcome {
  if (status === 429) return "429";
  if (status === 503) return "503";
  if (status >= 500) return "500";
  if (status !== 200) return "other";
  if (text.trimEnd().endsWith("data: [DONE]") && !text.includes('"error"')) return "ok";
  return isSlow ? "cut off" : "other";
}

/** One example detail per outcome, to say what the errors were. */
export function sampleDetails(results: readonly StreamResult[]): Record<string, string> {
  const samples: Record<string, string> = {};
  for (const r of results) if (r.detail !== null) samples[r.outcome] ??= r.detail;
  return samples;
}

/** Counts per outcome. */
export function countOutcomes(results: readonly StreamResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) counts[r.outcome] = (counts[r.outcome] ?? 0) + 1;
  return counts;
}
