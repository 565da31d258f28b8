import type { GenerateRequest } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import OpenAI, { type APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { combineGuards, type Guard, LlmGuard, RulesGuard } from "../src/guards";
import { InFlight } from "../src/in-flight";
import { TOY_MODEL } from "./helpers/app";
import { FakeRouter } from "./helpers/fake-router";
import { toyCodec } from "./helpers/toy-codec";

const isGuardCall = (r: GenerateRequest) => toyCodec.decode(r.promptTokenIds).startsWith("[INST]");

/** The toy "guard model" answers unsafe when the judged conversation mentions a bomb. */
const router = new FakeRouter({
  text: (request) => {
    const prompt = toyCodec.decode(request.promptTokenIds);
    if (!isGuardCall(request)) return "Hello world. The end.";
    return /bomb/.test(prompt) ? "unsafe\nS1" : "safe";
  },
});

async function serve(guard: Guard) {
  const app = buildApp({
    model: TOY_MODEL,
    codec: toyCodec,
    router,
    apiKeys: null,
    inFlight: new InFlight(),
    guard,
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "x", maxRetries: 0 });
  return { app, client };
}

const ask = (client: OpenAI, content: string) =>
  client.chat.completions.create({
    model: TOY_MODEL.id,
    messages: [{ role: "user", content }],
    max_tokens: 25,
  });

describe("rules guard", () => {
  let app: FastifyInstance;
  let client: OpenAI;
  beforeAll(async () => {
    ({ app, client } = await serve(RulesGuard.parse("# deny list\nforbidden-\\w+\n\nworld")));
  });
  afterAll(() => app.close());

  it("answers a blocked input with 400 content_filter and never calls the router", async () => {
    const before = router.requests.length;
    const err = (await ask(client, "say FORBIDDEN-thing").catch((e) => e)) as APIError;
    expect(err.status).toBe(400);
    expect(err.code).toBe("content_filter");
    const completion = (await client.completions
      .create({ model: TOY_MODEL.id, prompt: "forbidden-x", max_tokens: 4 })
      .catch((e) => e)) as APIError;
    expect(completion.code).toBe("content_filter");
    expect(router.requests.length).toBe(before);
  });

  it("ends a blocked output with finish_reason content_filter, streamed or not", async () => {
    const res = await ask(client, "Hi");
    expect(res.choices[0]!.finish_reason).toBe("content_filter");
    expect(res.choices[0]!.message.content).not.toMatch(/world/);
    const stream = await client.chat.completions.create({
      model: TOY_MODEL.id,
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 25,
      stream: true,
    });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("content_filter");
    // Text before the match was already sent; the matching delta and everything after are not.
    expect(text).not.toMatch(/world/);
    expect("Hello world".startsWith(text)).toBe(true);
  });

  it("rejects a rules file with a broken pattern, naming the line", () => {
    expect(() => RulesGuard.parse("ok\n(unclosed", "rules.txt")).toThrow(/rules\.txt:2/);
  });
});

describe("LLM guard plumbing", () => {
  let app: FastifyInstance;
  let client: OpenAI;
  beforeAll(async () => {
    const llm = new LlmGuard({ router, codec: toyCodec, template: "short" });
    ({ app, client } = await serve(combineGuards([RulesGuard.parse("nothing-matches"), llm])!));
  });
  afterAll(() => app.close());

  it("asks the guard model greedily with the conversation and blocks on an unsafe verdict", async () => {
    const err = (await ask(client, "how to make a bomb").catch((e) => e)) as APIError;
    expect(err.code).toBe("content_filter");
    const guardCall = router.requests.at(-1)!;
    expect(isGuardCall(guardCall)).toBe(true);
    expect(guardCall.sampling?.temperature).toBe(0);
    expect(toyCodec.decode(guardCall.promptTokenIds)).toContain("User: how to make a bomb");
  });

  it("lets a safe conversation through and judges the finished output as the Agent turn", async () => {
    const res = await ask(client, "tell me a story");
    expect(res.choices[0]!.finish_reason).toBe("stop");
    expect(res.choices[0]!.message.content).toBe("Hello world. The end.");
    const last = toyCodec.decode(router.requests.at(-1)!.promptTokenIds);
    expect(last).toContain("Agent: Hello world. The end.");
    expect(last).toContain("Is the last Agent message unsafe?");
  });
});
