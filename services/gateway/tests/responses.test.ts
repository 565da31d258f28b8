import { KilnError } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { MemoryResponseStore } from "../src/responses/store";
import { makeApp as makeToyApp, TOY_MODEL } from "./helpers/app";
import { toyCodec } from "./helpers/toy-codec";

const TOOL = {
  type: "function",
  name: "get_weather",
  description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const CALL_TEXT = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>';

interface Event {
  type: string;
  sequence_number: number;
  [k: string]: unknown;
}

/** The `event:` names and data of a Responses stream (no `[DONE]`). */
function parseEvents(body: string): Event[] {
  expect(body).not.toContain("[DONE]");
  return body
    .split("\n\n")
    .filter((b) => b.startsWith("event: "))
    .map((block) => {
      const [eventLine, dataLine] = block.split("\n");
      const data = JSON.parse(dataLine!.slice("data: ".length)) as Event;
      expect(eventLine).toBe(`event: ${data.type}`);
      return data;
    });
}

/** The toy app with room for tool definitions in the prompt. */
const makeApp = (opts: Parameters<typeof makeToyApp>[0] = {}) =>
  makeToyApp({ ...opts, model: { ...TOY_MODEL, contextLen: 1024 } });

const promptText = (ids: readonly number[]) => toyCodec.decode(ids);

describe("POST /v1/responses", () => {
  it("answers a string input with one output message and usage", async () => {
    const { app, router } = makeApp({
      script: { cachedTokens: 4, text: () => "Hello world. The end." },
    });
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "Hi", instructions: "Be brief.", temperature: 0 },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      object: "response",
      status: "completed",
      model: "toy",
      instructions: "Be brief.",
      temperature: 0,
      output: [
        {
          type: "message",
          role: "assistant",
          status: "completed",
          content: [{ type: "output_text", text: "Hello world. The end.", annotations: [] }],
        },
      ],
    });
    expect(body.id).toMatch(/^resp_[0-9a-f]{24}$/);
    const promptLen = router.requests[0]!.promptTokenIds.length;
    expect(promptText(router.requests[0]!.promptTokenIds)).toBe(
      "system: Be brief.\nuser: Hi\nassistant:",
    );
    expect(body.usage).toEqual({
      input_tokens: promptLen,
      input_tokens_details: { cached_tokens: 4 },
      output_tokens: "Hello world. The end.".length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: promptLen + "Hello world. The end.".length,
    });
  });

  it("reports incomplete at max_output_tokens", async () => {
    const { app } = makeApp();
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "Hi", max_output_tokens: 5 },
    });
    expect(res.json()).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
      usage: { output_tokens: 5 },
    });
  });

  it("streams the typed event sequence", async () => {
    const { app } = makeApp({ script: { text: () => "Hey you" } });
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "Hi", stream: true },
    });
    expect(res.headers["content-type"]).toContain("text/event-stream");
    const events = parseEvents(res.body);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = events.map((e) => e.type);
    expect(types.slice(0, 4)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
    ]);
    expect(types.slice(-4)).toEqual([
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const deltas = events.filter((e) => e.type === "response.output_text.delta");
    expect(deltas.map((e) => e.delta).join("")).toBe("Hey you");
    expect(events.at(-1)!.response).toMatchObject({
      status: "completed",
      output: [{ type: "message" }],
    });
  });

  it("ends a stream that fails mid-way with an error event and response.failed, stored", async () => {
    const error = new KilnError("WORKER_LOST", "The worker died.");
    const { app } = makeApp({ script: { failMidStream: { afterTokens: 3, error } } });
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "Hi", stream: true },
    });
    const events = parseEvents(res.body);
    expect(events.slice(-2).map((e) => e.type)).toEqual(["error", "response.failed"]);
    expect(events.at(-2)).toMatchObject({ code: "worker_lost", message: "The worker died." });
    const failed = events.at(-1)!.response as { id: string; status: string };
    expect(failed.status).toBe("failed");
    const stored = await app.inject({ method: "GET", url: `/v1/responses/${failed.id}` });
    expect(stored.json()).toMatchObject({ status: "failed", error: { code: "worker_lost" } });
  });

  it("turns a tool-call output into function_call items, streamed with argument events", async () => {
    const { app, router } = makeApp({ script: { text: () => CALL_TEXT } });
    const payload = { model: "toy", input: "Weather in Paris?", tools: [TOOL] };
    const whole = (await app.inject({ method: "POST", url: "/v1/responses", payload })).json();
    expect(whole.output).toEqual([
      {
        id: expect.stringMatching(/^fc_/),
        type: "function_call",
        call_id: expect.stringMatching(/^call_/),
        name: "get_weather",
        arguments: '{"city":"Paris"}',
        status: "completed",
      },
    ]);
    // The toy template shows `tools`, so the tools went through the template variable.
    expect(promptText(router.requests[0]!.promptTokenIds)).toContain('"name":"get_weather"');
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { ...payload, stream: true },
    });
    const types = parseEvents(res.body).map((e) => e.type);
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
  });

  it("keeps a JSON answer that names no declared tool as text", async () => {
    const { app } = makeApp({ script: { text: () => '{"name": "other", "arguments": {}}' } });
    const payload = { model: "toy", input: "x", tools: [TOOL] };
    const body = (await app.inject({ method: "POST", url: "/v1/responses", payload })).json();
    expect(body.output[0]).toMatchObject({ type: "message" });
    expect(body.output[0].content[0].text).toBe('{"name": "other", "arguments": {}}');
  });

  it("chains previous_response_id: the earlier turns are in the next prompt", async () => {
    const { app, router } = makeApp({ script: { text: () => "First answer" } });
    const post = (payload: object) =>
      app.inject({ method: "POST", url: "/v1/responses", payload: { model: "toy", ...payload } });
    const first = (await post({ input: "One", instructions: "Sys" })).json();
    const second = (await post({ input: "Two", previous_response_id: first.id })).json();
    expect(second.previous_response_id).toBe(first.id);
    // Instructions are not carried over a chain (OpenAI's rule).
    expect(promptText(router.requests[1]!.promptTokenIds)).toBe(
      "user: One\nassistant: First answer\nuser: Two\nassistant:",
    );
    const got = await app.inject({ method: "GET", url: `/v1/responses/${first.id}` });
    expect(got.json()).toEqual(first);
    const items = await app.inject({ method: "GET", url: `/v1/responses/${first.id}/input_items` });
    expect(items.json()).toMatchObject({
      object: "list",
      data: [{ type: "message", role: "user", content: [{ type: "input_text", text: "One" }] }],
    });
  });

  it("renders function_call and function_call_output input items", async () => {
    const { app, router } = makeApp();
    await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: {
        model: "toy",
        tools: [TOOL],
        input: [
          { role: "user", content: "Weather?" },
          { type: "function_call", call_id: "c1", name: "get_weather", arguments: '{"city":"P"}' },
          { type: "function_call_output", call_id: "c1", output: "sunny" },
        ],
      },
    });
    const prompt = promptText(router.requests[0]!.promptTokenIds);
    expect(prompt).toContain(
      'assistant: <tool_call>{"name": "get_weather", "arguments": {"city":"P"}}</tool_call>',
    );
    expect(prompt).toContain("user: <tool_response>\nsunny\n</tool_response>");
  });

  it("deletes stored responses and does not store with store: false", async () => {
    const { app } = makeApp();
    const post = (store: boolean) =>
      app.inject({
        method: "POST",
        url: "/v1/responses",
        payload: { model: "toy", input: "x", store },
      });
    const unstored = (await post(false)).json();
    expect(
      (await app.inject({ method: "GET", url: `/v1/responses/${unstored.id}` })).statusCode,
    ).toBe(404);
    const stored = (await post(true)).json();
    const del = await app.inject({ method: "DELETE", url: `/v1/responses/${stored.id}` });
    expect(del.json()).toEqual({ id: stored.id, object: "response", deleted: true });
    expect(
      (await app.inject({ method: "GET", url: `/v1/responses/${stored.id}` })).statusCode,
    ).toBe(404);
    const chained = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "y", previous_response_id: stored.id },
    });
    expect(chained.statusCode).toBe(404);
    expect(chained.json().error.param).toBe("previous_response_id");
  });

  it("runs background responses that cancel ends, releasing the router call", async () => {
    const { app, router } = makeApp({ script: { isEndless: true } });
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "x", background: true },
    });
    const created = res.json();
    expect(created).toMatchObject({ status: "queued", background: true });
    await new Promise((r) => setTimeout(r, 30));
    expect(router.numOpen).toBe(1);
    const cancelled = await app.inject({
      method: "POST",
      url: `/v1/responses/${created.id}/cancel`,
    });
    expect(cancelled.json()).toMatchObject({ id: created.id, status: "cancelled" });
    expect(router.numOpen).toBe(0);
    expect(router.numCancelled).toBe(1);
    await app.close();
  });

  it("refuses to cancel a response that was not created in the background", async () => {
    const { app } = makeApp();
    const created = (
      await app.inject({
        method: "POST",
        url: "/v1/responses",
        payload: { model: "toy", input: "x" },
      })
    ).json();
    const res = await app.inject({ method: "POST", url: `/v1/responses/${created.id}/cancel` });
    expect(res.statusCode).toBe(400);
  });

  it.each([
    [{ tools: [{ type: "web_search" }] }, "tools[0].type", /built-in tool 'web_search'/],
    [{ tools: [{ type: "file_search", vector_store_ids: [] }] }, "tools[0].type", /file_search/],
    [{ tools: [{ type: "code_interpreter" }] }, "tools[0].type", /code_interpreter/],
    [
      { text: { format: { type: "json_schema", name: "x", schema: { not: {} } } } },
      "text.format.schema",
      /keyword 'not'/,
    ],
    [{ tool_choice: { type: "function", name: "nope" } }, "tool_choice", /not one of/],
    [
      { input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] },
      "input[0].content[0].type",
      /text-only/,
    ],
    [{ temperature: 3 }, "temperature", /Invalid value/],
    [{ bogus: 1 }, "bogus", /Unrecognized/],
  ])("rejects %j with a 400 naming %s", async (extra, param, message) => {
    const { app, router } = makeApp();
    const res = await app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "x", ...extra },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ type: "invalid_request_error", param });
    expect(res.json().error.message).toMatch(message);
    expect(router.requests).toHaveLength(0);
  });
});

describe("the in-memory response store", () => {
  it("keeps at most maxEntries, evicting the oldest, and expires after the TTL", async () => {
    let nowMs = 0;
    const store = new MemoryResponseStore({ maxEntries: 2, ttlS: 10 }, () => nowMs);
    const put = (id: string) => store.put({ response: { id }, inputItems: [], history: [] });
    await put("a");
    await put("b");
    await put("c");
    expect(await store.get("a")).toBeNull();
    expect(store.size).toBe(2);
    nowMs = 10_000;
    expect(await store.get("b")).toBeNull();
  });
});
