/**
 * `npm run conformance -- --base-url URL [--model M] [--api-key K] [--json] [--only PREFIX]`:
 * checks any OpenAI-compatible server (URL with or without the trailing /v1) and prints a
 * Markdown table (or JSON). Exits 1 when a check fails; "unsupported" is not a failure.
 */
import { parseArgs } from "node:util";
import { ALL_CHECKS } from "./checks";
import { runConformance, toMarkdown } from "./runner";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "base-url": { type: "string" },
      model: { type: "string" },
      "api-key": { type: "string" },
      json: { type: "boolean" },
      only: { type: "string" },
      "timeout-s": { type: "string" },
    },
  });
  const baseUrl = values["base-url"];
  if (!baseUrl) throw new Error("--base-url is required (e.g. http://127.0.0.1:8000/v1)");
  const origin = baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
  const apiKey = values["api-key"] ?? process.env.OPENAI_API_KEY ?? "none";
  const model = values.model ?? (await firstModel(origin, apiKey));
  const timeoutMs = 1000 * Number(values["timeout-s"] ?? 60);
  const checks = ALL_CHECKS.filter((c) => !values.only || c.id.startsWith(values.only));
  const results = await runConformance({ origin, model, apiKey, timeoutMs }, checks);
  process.stdout.write(
    values.json ? `${JSON.stringify(results, null, 2)}\n` : `${toMarkdown(results)}\n`,
  );
  if (results.some((r) => r.status === "fail")) process.exitCode = 1;
}

async function firstModel(origin: string, apiKey: string): Promise<string> {
  const res = await fetch(`${origin}/v1/models`, {
    headers: { authorization: `Bearer ${apiKey}` },
  });
  const body = (await res.json()) as { data?: { id: string }[] };
  const id = body.data?.[0]?.id;
  if (!id) throw new Error("no --model given and GET /v1/models lists none");
  return id;
}

main().catch((err: unknown) => {
  process.stderr.write(`conformance: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
