import { type Check, expect, requireSupported, Unsupported } from "../check";
import { requestJson, requestSse } from "../http";

/** vLLM's utility routes: not OpenAI's API, so a server without them is "unsupported". */
export const EXTENSION_CHECKS: readonly Check[] = [
  {
    id: "vllm.tokenize-detokenize",
    endpoint: "POST /tokenize, /detokenize",
    title: "tokenize then detokenize round-trips a prompt (vLLM)",
    run: async ({ target }) => {
      const tok = await requestJson(target, "POST", "/tokenize", {
        model: target.model,
        prompt: "Once upon a time",
      });
      requireSupported(tok, "tokenize");
      const { tokens, count } = tok.body as { tokens: number[]; count: number };
      expect(Array.isArray(tokens) && count === tokens.length, "tokens/count mismatch");
      const detok = await requestJson(target, "POST", "/detokenize", {
        model: target.model,
        tokens,
      });
      requireSupported(detok, "detokenize");
      const prompt = (detok.body as { prompt: string }).prompt;
      expect(prompt.trim() === "Once upon a time", `detokenized ${JSON.stringify(prompt)}`);
    },
  },
  {
    id: "vllm.version",
    endpoint: "GET /version",
    title: "reports the server version (vLLM)",
    run: async ({ target }) => {
      const reply = await requestJson(target, "GET", "/version");
      requireSupported(reply, "version");
      expect(typeof (reply.body as { version?: unknown }).version === "string", "no version");
    },
  },
  {
    id: "vllm.continuous-usage-stats",
    endpoint: "POST /v1/chat/completions",
    title: "stream_options.continuous_usage_stats puts usage in every chunk (vLLM)",
    run: async ({ target }) => {
      const reply = await requestSse(target, "/v1/chat/completions", {
        model: target.model,
        messages: [{ role: "user", content: "Hi" }],
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: true, continuous_usage_stats: true },
      });
      if (reply.status !== 200)
        requireSupported({ status: reply.status, body: reply.body }, "stream");
      const chunks = reply.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
      const withUsage = chunks.filter((c: { usage?: unknown }) => c.usage);
      if (withUsage.length < chunks.length) {
        throw new Unsupported("usage only in the last chunk");
      }
    },
  },
];
