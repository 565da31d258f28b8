import type OpenAI from "openai";

/** What one soak client does in one iteration. */
export type SoakKind = "stream" | "abort" | "n>1" | "chat";

export interface SoakCounts {
  readonly completed: Record<SoakKind, number>;
  /** Requests that failed (any error other than the aborts the workload makes itself). */
  readonly errors: string[];
}

const PROMPTS = [
  "Once upon a time",
  "The little dog ran to the park and",
  "Lily and Ben were playing with a big red ball when",
  "One day, a cat",
];

/**
 * One iteration of the soak workload, chosen by `rand`: a long greedy stream, a stream
 * aborted after a few tokens (the client goes away), a non-streaming request with n = 3 and a
 * seed, or a chat completion. Lengths are long enough that a small KV pool preempts.
 */
export async function runOne(
  client: OpenAI,
  model: string,
  rand: () => number,
  counts: SoakCounts,
): Promise<void> {
  const prompt = PROMPTS[Math.floor(rand() * PROMPTS.length)]!;
  const maxTokens = 40 + Math.floor(rand() * 120);
  const pick = rand();
  const kind: SoakKind =
    pick < 0.35 ? "stream" : pick < 0.6 ? "abort" : pick < 0.8 ? "n>1" : "chat";
  try {
    if (kind === "stream" || kind === "abort") {
      const controller = new AbortController();
      const abortAfter = kind === "abort" ? 1 + Math.floor(rand() * 10) : Number.POSITIVE_INFINITY;
      const body = {
        model,
        prompt,
        max_tokens: maxTokens,
        ignore_eos: true,
        stream: true as const,
      };
      const stream = await client.completions.create(body, { signal: controller.signal });
      let numChunks = 0;
      try {
        for await (const _chunk of stream) {
          if (++numChunks >= abortAfter) controller.abort();
        }
      } catch (err) {
        if (!controller.signal.aborted) throw err;
      }
    } else if (kind === "n>1") {
      await client.completions.create({
        model,
        prompt,
        max_tokens: Math.min(maxTokens, 60),
        n: 3,
        temperature: 0.8,
        seed: Math.floor(rand() * 1000),
      });
    } else {
      await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: prompt }],
        max_tokens: Math.min(maxTokens, 100),
      });
    }
    counts.completed[kind]++;
  } catch (err) {
    counts.errors.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
