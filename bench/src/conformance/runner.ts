import OpenAI from "openai";
import { type Check, type CheckResult, Unsupported } from "./check";
import { ALL_CHECKS } from "./checks";
import type { Target } from "./http";

/** Runs `checks` one after another against `target` (never throws: failures are results). */
export async function runConformance(
  target: Target,
  checks: readonly Check[] = ALL_CHECKS,
): Promise<CheckResult[]> {
  const client = new OpenAI({
    baseURL: `${target.origin}/v1`,
    apiKey: target.apiKey,
    maxRetries: 0,
    timeout: target.timeoutMs,
  });
  const results: CheckResult[] = [];
  for (const check of checks) {
    const start = performance.now();
    let status: CheckResult["status"] = "pass";
    let detail = "";
    try {
      await check.run({ target, client });
    } catch (err) {
      status = err instanceof Unsupported ? "unsupported" : "fail";
      detail = err instanceof Error ? err.message : String(err);
    }
    const { id, endpoint, title } = check;
    results.push({ id, endpoint, title, status, detail, ms: performance.now() - start });
  }
  return results;
}

/** The results as a Markdown table, with a totals line. */
export function toMarkdown(results: readonly CheckResult[]): string {
  const clean = (s: string) => s.replace(/\|/g, "\\|").replace(/\s+/g, " ").slice(0, 160);
  const lines = [
    "| check | endpoint | result | detail |",
    "|---|---|---|---|",
    ...results.map(
      (r) => `| \`${r.id}\` ${clean(r.title)} | ${r.endpoint} | ${r.status} | ${clean(r.detail)} |`,
    ),
  ];
  const count = (s: string) => results.filter((r) => r.status === s).length;
  lines.push(
    "",
    `${count("pass")} pass, ${count("fail")} fail, ${count("unsupported")} unsupported`,
  );
  return lines.join("\n");
}
