import { type Check, type CheckContext, expect, expectStatus, requireSupported } from "../check";
import { requestJson, requestSse } from "../http";
import { assertSchema } from "../validate";

interface Resp {
  id: string;
  status: string;
  output: { type: string; content?: { text: string }[] }[];
  previous_response_id: string | null;
  usage: { input_tokens: number; output_tokens: number };
}

const WEATHER = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

async function create(ctx: CheckContext, extra: Record<string, unknown>) {
  return requestJson(ctx.target, "POST", "/v1/responses", {
    model: ctx.target.model,
    input: "Tell me a story about a dog.",
    max_output_tokens: 16,
    ...extra,
  });
}

/** Creates a response; a server without the Responses API makes the check unsupported. */
async function createOk(ctx: CheckContext, extra: Record<string, unknown>): Promise<Resp> {
  const reply = await create(ctx, extra);
  requireSupported(reply, "responses");
  assertSchema("Response", reply.body);
  return reply.body as Resp;
}

const text = (r: Resp) =>
  r.output
    .flatMap((o) => o.content ?? [])
    .map((c) => c.text)
    .join("");

export const RESPONSES_CHECKS: readonly Check[] = [
  {
    id: "responses.create",
    endpoint: "POST /v1/responses",
    title: "a response from a string input, raw and through the official client",
    run: async (ctx) => {
      const body = await createOk(ctx, {});
      expect(["completed", "incomplete"].includes(body.status), `status ${body.status}`);
      const viaClient = await ctx.client.responses.create({
        model: ctx.target.model,
        input: [{ role: "user", content: "Hi" }],
        instructions: "Be brief.",
        max_output_tokens: 8,
        temperature: 0.5,
        top_p: 0.9,
      });
      assertSchema("Response", viaClient, "client response");
    },
  },
  {
    id: "responses.stream",
    endpoint: "POST /v1/responses",
    title: "stream: typed events in order, each matching its schema",
    run: async (ctx) => {
      const reply = await requestSse(ctx.target, "/v1/responses", {
        model: ctx.target.model,
        input: "Once upon a time",
        max_output_tokens: 12,
        stream: true,
      });
      if (reply.status !== 200)
        requireSupported({ status: reply.status, body: reply.body }, "stream");
      const events = reply.events
        .filter((e) => e.data !== "[DONE]")
        .map((e, i) => {
          const data = JSON.parse(e.data) as { type: string; sequence_number: number };
          assertSchema("ResponseStreamEvent", data, `event ${i} (${data.type})`);
          expect(
            e.event === null || e.event === data.type,
            `event: ${e.event} vs type ${data.type}`,
          );
          return data;
        });
      const types = events.map((e) => e.type);
      expect(types[0] === "response.created", `first event ${types[0]}`);
      for (const t of [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
      ]) {
        expect(types.includes(t), `no ${t}`);
      }
      expect(
        /^response\.(completed|incomplete)$/.test(types.at(-1) ?? ""),
        `last event ${types.at(-1)}`,
      );
      const seq = events.map((e) => e.sequence_number);
      expect(
        seq.every((n, i) => i === 0 || n > seq[i - 1]!),
        "sequence_number not increasing",
      );
    },
  },
  {
    id: "responses.max_output_tokens",
    endpoint: "POST /v1/responses",
    title: "max_output_tokens cuts the output: status incomplete, reason max_output_tokens",
    run: async (ctx) => {
      const body = (await createOk(ctx, { max_output_tokens: 2, temperature: 0 })) as Resp & {
        incomplete_details: { reason?: string } | null;
      };
      expect(body.usage.output_tokens <= 2, `output_tokens ${body.usage.output_tokens}`);
      if (body.usage.output_tokens === 2) {
        expect(body.status === "incomplete", `status ${body.status}`);
        expect(body.incomplete_details?.reason === "max_output_tokens", "no incomplete reason");
      }
    },
  },
  {
    id: "responses.previous_response_id",
    endpoint: "POST /v1/responses",
    title: "previous_response_id continues the conversation",
    run: async (ctx) => {
      const first = await createOk(ctx, { input: "Lily had a red ball.", max_output_tokens: 6 });
      const second = await createOk(ctx, {
        input: "What color was it?",
        previous_response_id: first.id,
        max_output_tokens: 6,
      });
      expect(second.previous_response_id === first.id, "previous_response_id not echoed");
      expect(
        second.usage.input_tokens > first.usage.input_tokens,
        "the chain's prompt did not grow",
      );
    },
  },
  {
    id: "responses.function-tool",
    endpoint: "POST /v1/responses",
    title: "function tools and a function_call_output round trip",
    run: async (ctx) => {
      await createOk(ctx, {
        input: "What is the weather in Paris?",
        tools: [WEATHER],
        tool_choice: "auto",
      });
      await createOk(ctx, {
        tools: [WEATHER],
        input: [
          { role: "user", content: "What is the weather in Paris?" },
          {
            type: "function_call",
            call_id: "call_1",
            name: "get_weather",
            arguments: '{"city":"Paris"}',
          },
          { type: "function_call_output", call_id: "call_1", output: "sunny" },
        ],
      });
    },
  },
  {
    id: "responses.retrieve-delete",
    endpoint: "GET/DELETE /v1/responses/{id}",
    title: "a stored response can be retrieved, listed (input_items) and deleted",
    run: async (ctx) => {
      const created = await createOk(ctx, {});
      const got = await requestJson(ctx.target, "GET", `/v1/responses/${created.id}`);
      requireSupported(got, "retrieve");
      assertSchema("Response", got.body);
      expect(text(got.body as Resp) === text(created), "retrieved text differs");
      const items = await requestJson(ctx.target, "GET", `/v1/responses/${created.id}/input_items`);
      requireSupported(items, "input_items");
      assertSchema("ResponseItemList", items.body);
      const del = await requestJson(ctx.target, "DELETE", `/v1/responses/${created.id}`);
      requireSupported(del, "delete");
      assertSchema("DeletedResponse", del.body);
      const gone = await requestJson(ctx.target, "GET", `/v1/responses/${created.id}`);
      expectStatus(gone, 404, "deleted response");
      assertSchema("ErrorResponse", gone.body);
    },
  },
  {
    id: "responses.background-cancel",
    endpoint: "POST /v1/responses/{id}/cancel",
    title: "a background response can be cancelled",
    run: async (ctx) => {
      const created = await createOk(ctx, { background: true, max_output_tokens: 200 });
      const cancelled = await requestJson(ctx.target, "POST", `/v1/responses/${created.id}/cancel`);
      requireSupported(cancelled, "cancel");
      assertSchema("Response", cancelled.body);
      const status = (cancelled.body as Resp).status;
      expect(["cancelled", "completed", "incomplete"].includes(status), `status ${status}`);
    },
  },
  {
    id: "responses.built-in-tools",
    endpoint: "POST /v1/responses",
    title: "built-in tools (web_search)",
    run: async (ctx) => {
      await createOk(ctx, { tools: [{ type: "web_search" }] });
    },
  },
  {
    id: "responses.json-schema",
    endpoint: "POST /v1/responses",
    title: "text.format json_schema gives schema-valid JSON",
    run: async (ctx) => {
      const schema = {
        type: "object",
        properties: { name: { type: "string", maxLength: 16 } },
        required: ["name"],
        additionalProperties: false,
      };
      const body = await createOk(ctx, {
        input: "Name a dog.",
        max_output_tokens: 64,
        text: { format: { type: "json_schema", name: "dog", schema, strict: true } },
      });
      const parsed = JSON.parse(text(body)) as { name?: unknown };
      expect(typeof parsed.name === "string", "no name in the JSON");
    },
  },
];
