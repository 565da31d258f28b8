import Ajv from "ajv";
import fc from "fast-check";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

/**
 * Structured output and tool calling (ADR 0016) through real router, worker and gateway
 * processes with the official `openai` client. stories260K writes children's stories: without
 * the grammar mask none of these outputs would be JSON, let alone valid against the schema.
 */
let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  stack = await startStack();
  client = stack.client;
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

const ajv = new Ajv({ strict: false });
const MAX_TOKENS = 400;
const SMALL_SCHEMA = {
  type: "object",
  properties: { name: { type: "string", maxLength: 6 }, ok: { type: "boolean" } },
  required: ["name", "ok"],
  additionalProperties: false,
};
const messages = [{ role: "user" as const, content: "Write the answer as JSON." }];

type Schema = Record<string, unknown>;

/** Bounded leaves: every string, number and list has a size limit, so output must end. */
const leaf: fc.Arbitrary<Schema> = fc.oneof(
  fc
    .tuple(fc.integer({ min: -50, max: 50 }), fc.integer({ min: 0, max: 100 }))
    .map(([min, span]) => ({ type: "integer", minimum: min, maximum: min + span })),
  fc.integer({ min: 1, max: 8 }).map((max) => ({ type: "string", maxLength: max })),
  fc
    .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 4 }))
    .map(([min, more]) => ({ type: "string", minLength: min, maxLength: min + more })),
  fc.constant({ type: "string", pattern: "^[a-c]{1,4}$" }),
  fc.constant({ type: "boolean" }),
  fc.constant({ type: "null" }),
  fc
    .uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 1, maxLength: 4 })
    .map((values) => ({ enum: values })),
  fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom("x", "yes")).map((v) => ({ const: v })),
);

const propName = fc.stringMatching(/^[a-z][a-z0-9_]{0,7}$/);

const node: fc.Arbitrary<Schema> = fc.letrec<{ node: Schema }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc
      .tuple(tie("node"), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }))
      .map(([items, min, more]) => ({ type: "array", items, minItems: min, maxItems: min + more })),
    fc
      .uniqueArray(fc.tuple(propName, tie("node")), {
        minLength: 1,
        maxLength: 3,
        selector: ([k]) => k,
      })
      .chain((entries) =>
        fc.subarray(entries.map(([k]) => k)).map((required) => ({
          type: "object",
          properties: Object.fromEntries(entries),
          required,
          additionalProperties: false,
        })),
      ),
    fc.tuple(leaf, leaf).map(([a, b]) => ({ anyOf: [a, b] })),
  ),
})).node;

/** A top-level object, sometimes with its parts behind `$ref`/`$defs`. */
const topSchema: fc.Arbitrary<Schema> = fc
  .tuple(
    fc.uniqueArray(fc.tuple(propName, node), { minLength: 1, maxLength: 3, selector: ([k]) => k }),
    fc.boolean(),
  )
  .map(([entries, useDefs]) => {
    const names = entries.map(([k]) => k);
    if (!useDefs) {
      return {
        type: "object",
        properties: Object.fromEntries(entries),
        required: names,
        additionalProperties: false,
      };
    }
    return {
      $defs: Object.fromEntries(entries.map(([k, s]) => [`d_${k}`, s])),
      type: "object",
      properties: Object.fromEntries(names.map((k) => [k, { $ref: `#/$defs/d_${k}` }])),
      required: names,
      additionalProperties: false,
    };
  });

async function streamedText(
  params: Record<string, unknown>,
): Promise<{ text: string; finish: string | null }> {
  const stream = await client.chat.completions.create({
    ...(params as unknown as OpenAI.ChatCompletionCreateParamsStreaming),
    stream: true,
  });
  let text = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

async function completeJson(
  schema: Schema,
  isStreamed: boolean,
  seed: number,
): Promise<{ text: string; finish: string | null }> {
  const params = {
    model: MODEL,
    messages,
    max_tokens: MAX_TOKENS,
    temperature: 1,
    seed,
    response_format: { type: "json_schema", json_schema: { name: "answer", schema, strict: true } },
  };
  if (isStreamed) return streamedText(params);
  const res = await client.chat.completions.create(
    params as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
  );
  return { text: res.choices[0]!.message.content ?? "", finish: res.choices[0]!.finish_reason };
}

describe("response_format json_schema", () => {
  // Each schema once, even ones streamed and odd ones not: 100 requests keep the suite cheap.
  it("100 random bounded schemas: every output parses, validates with ajv and ends by itself (streamed and not)", async () => {
    const schemas = fc.sample(topSchema, { numRuns: 100, seed: 1234 });
    const failures: string[] = [];
    const run = async (schema: Schema, i: number) => {
      const validate = ajv.compile(schema);
      for (const isStreamed of [i % 2 === 0]) {
        const { text, finish } = await completeJson(schema, isStreamed, i);
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch {
          failures.push(
            `#${i} stream=${isStreamed}: not JSON: ${text.slice(0, 300)} for ${JSON.stringify(schema)}`,
          );
          continue;
        }
        if (!validate(value)) {
          failures.push(
            `#${i} stream=${isStreamed}: ${ajv.errorsText(validate.errors)}: ${text} for ${JSON.stringify(schema)}`,
          );
        }
        if (finish !== "stop") failures.push(`#${i} stream=${isStreamed}: finish_reason ${finish}`);
      }
    };
    for (let i = 0; i < schemas.length; i += 25) {
      await Promise.all(schemas.slice(i, i + 25).map((s, j) => run(s, i + j)));
    }
    expect(failures).toEqual([]);
  }, 240_000);
});

describe("json_object and vLLM's structured_outputs", { timeout: 60_000 }, () => {
  it("json_object gives a JSON object, streamed and not", async () => {
    // json_object bounds nothing: a string may run on for ever. A bias towards '"' and '}' lets
    // this model end strings and objects (without the grammar it would write '"}"}' soup).
    let numStopped = 0;
    for (const isStreamed of [false, true]) {
      for (const seed of [1, 2, 3, 4]) {
        const params = {
          model: MODEL,
          messages,
          max_tokens: 400,
          temperature: 1,
          seed,
          logit_bias: { "436": 6, "37": 6, "128": 6 },
          response_format: { type: "json_object" },
        };
        const { text, finish } = isStreamed
          ? await streamedText(params)
          : await client.chat.completions
              .create(params as OpenAI.ChatCompletionCreateParamsNonStreaming)
              .then((r) => ({
                text: r.choices[0]!.message.content ?? "",
                finish: r.choices[0]!.finish_reason,
              }));
        if (finish !== "stop") continue;
        numStopped++;
        const value = JSON.parse(text) as unknown;
        expect(typeof value).toBe("object");
        expect(Array.isArray(value)).toBe(false);
      }
    }
    expect(numStopped).toBe(8);
  });

  it("regex, choice and EBNF grammar constrain chat; response_format constrains completions", async () => {
    const chat = (structured_outputs: unknown) =>
      client.chat.completions
        .create({
          model: MODEL,
          messages,
          max_tokens: 50,
          temperature: 1,
          seed: 5,
          structured_outputs,
        } as OpenAI.ChatCompletionCreateParamsNonStreaming)
        .then((r) => r.choices[0]!);
    const regex = await chat({ regex: "[0-9]{3}-[a-z]{2}" });
    expect(regex.message.content).toMatch(/^[0-9]{3}-[a-z]{2}$/);
    expect(regex.finish_reason).toBe("stop");
    const choice = await chat({ choice: ["bogwp", "sjsm", "b"] });
    expect(["bogwp", "sjsm", "b"]).toContain(choice.message.content);
    const grammar = await chat({ grammar: 'root ::= "yes" | "no" | "maybe " [0-9]' });
    expect(grammar.message.content).toMatch(/^(yes|no|maybe [0-9])$/);
    const completion = await client.completions.create({
      model: MODEL,
      prompt: "Once upon a time",
      max_tokens: MAX_TOKENS,
      seed: 9,
      response_format: { type: "json_schema", json_schema: { name: "s", schema: SMALL_SCHEMA } },
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(completion.choices[0]!.finish_reason).toBe("stop");
    expect(ajv.validate(SMALL_SCHEMA, JSON.parse(completion.choices[0]!.text))).toBe(true);
  });

  it("n > 1: every choice has its own matcher and matches the schema", async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages,
      n: 4,
      max_tokens: MAX_TOKENS,
      temperature: 1,
      seed: 11,
      response_format: { type: "json_schema", json_schema: { name: "s", schema: SMALL_SCHEMA } },
    });
    expect(res.choices).toHaveLength(4);
    const texts = res.choices.map((c) => c.message.content ?? "");
    for (const c of res.choices) expect(c.finish_reason).toBe("stop");
    for (const text of texts) expect(ajv.validate(SMALL_SCHEMA, JSON.parse(text))).toBe(true);
    expect(new Set(texts).size).toBeGreaterThan(1);
  });

  it("the Responses API's text.format json_schema and a named tool_choice constrain the output", async () => {
    const schema = {
      type: "object",
      properties: { n: { type: "integer", minimum: 1, maximum: 9 } },
      required: ["n"],
      additionalProperties: false,
    };
    const res = await client.responses.create({
      model: MODEL,
      input: "Give a number.",
      max_output_tokens: 100,
      text: { format: { type: "json_schema", name: "num", schema, strict: true } },
    });
    expect(ajv.validate(schema, JSON.parse(res.output_text))).toBe(true);
    expect(res.text?.format?.type).toBe("json_schema");
    const call = await client.responses.create({
      model: MODEL,
      input: "Weather?",
      max_output_tokens: 120,
      tools: [
        {
          type: "function",
          name: "weather",
          parameters: WEATHER.function.parameters,
          strict: true,
        },
      ],
      tool_choice: { type: "function", name: "weather" },
    });
    const calls = call.output.filter((o) => o.type === "function_call");
    expect(calls).toHaveLength(1);
    const args = JSON.parse((calls[0] as { arguments: string }).arguments);
    expect(ajv.validate(WEATHER.function.parameters, args)).toBe(true);
  });
});

const WEATHER = {
  type: "function" as const,
  function: {
    name: "weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", maxLength: 8 },
        days: { type: "integer", minimum: 1, maximum: 7 },
      },
      required: ["city", "days"],
      additionalProperties: false,
    },
  },
};
const TIME = {
  type: "function" as const,
  function: {
    name: "time",
    parameters: {
      type: "object",
      properties: { zone: { enum: ["utc", "cet", "pst"] } },
      required: ["zone"],
      additionalProperties: false,
    },
  },
};
const TOOLS = [WEATHER, TIME];
/** stories260K has a 512-token context: the fallback prompt of one tool fits, two barely. */
const ONE_TOOL = [WEATHER];
const toolMessages = [{ role: "user" as const, content: "Weather in Paris?" }];

function checkCall(call: {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}) {
  expect(call.id).toMatch(/^call_/);
  expect(call.type).toBe("function");
  const tool = TOOLS.find((t) => t.function.name === call.function.name);
  expect(tool, call.function.name).toBeDefined();
  expect(ajv.validate(tool!.function.parameters, JSON.parse(call.function.arguments))).toBe(true);
}

/** Rebuilds tool calls from streamed deltas, checking OpenAI's order: id and name first, then arguments. */
async function streamedCalls(params: Record<string, unknown>) {
  const stream = await client.chat.completions.create({
    ...(params as unknown as OpenAI.ChatCompletionCreateParamsStreaming),
    stream: true,
  });
  const calls: { id: string; type: string; function: { name: string; arguments: string } }[] = [];
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    finish = choice.finish_reason ?? finish;
    for (const delta of choice.delta.tool_calls ?? []) {
      if (delta.id) {
        expect(delta.index).toBe(calls.length);
        expect(delta.function?.name).toBeTruthy();
        calls.push({
          id: delta.id,
          type: delta.type ?? "",
          function: { name: delta.function!.name!, arguments: "" },
        });
      } else {
        calls[delta.index]!.function.arguments += delta.function?.arguments ?? "";
      }
    }
  }
  return { calls, finish };
}

describe("tool calling", { timeout: 60_000 }, () => {
  const base = {
    model: MODEL,
    messages: toolMessages,
    tools: ONE_TOOL,
    max_tokens: 120,
    temperature: 1,
  };

  it("tool_choice required: every answer is a valid call, streamed and not", async () => {
    for (const seed of [1, 2, 3]) {
      const res = await client.chat.completions.create({
        ...base,
        seed,
        tool_choice: "required",
        parallel_tool_calls: false,
      });
      const choice = res.choices[0]!;
      expect(choice.finish_reason).toBe("tool_calls");
      expect(choice.message.tool_calls).toHaveLength(1);
      checkCall(choice.message.tool_calls![0] as never);
      const streamed = await streamedCalls({
        ...base,
        seed,
        tool_choice: "required",
        parallel_tool_calls: false,
      });
      expect(streamed.finish).toBe("tool_calls");
      expect(streamed.calls).toHaveLength(1);
      for (const call of streamed.calls) checkCall(call);
    }
  });

  it("a named tool_choice calls that function, streamed and not", async () => {
    // Only the named tool is rendered, so both fit the context.
    const tool_choice = { type: "function" as const, function: { name: "time" } };
    for (const seed of [4, 5]) {
      const res = await client.chat.completions.create({
        ...base,
        tools: TOOLS,
        seed,
        tool_choice,
      });
      const calls = res.choices[0]!.message.tool_calls!;
      expect(calls.map((c) => (c as { function: { name: string } }).function.name)).toEqual([
        "time",
      ]);
      checkCall(calls[0] as never);
      const streamed = await streamedCalls({ ...base, tools: TOOLS, seed, tool_choice });
      expect(streamed.calls.map((c) => c.function.name)).toEqual(["time"]);
      checkCall(streamed.calls[0]!);
    }
  });

  it("parallel_tool_calls: several valid calls in one answer, streamed and not; one call when false", async () => {
    // This model ends after one call when it may; a bias against the end token (the grammar
    // still decides what is allowed) makes it take the separator to further calls. The number
    // of calls is not bounded, so such an answer runs out of tokens in a later call.
    const params = { ...base, tools: [TIME], max_tokens: 230, logit_bias: { "2": -0.5 } };
    for (const seed of [1, 2]) {
      const res = await client.chat.completions.create({
        ...params,
        seed,
        tool_choice: "required",
        parallel_tool_calls: true,
      });
      const calls = res.choices[0]!.message.tool_calls ?? [];
      expect(calls.length).toBeGreaterThanOrEqual(2);
      for (const call of calls) checkCall(call as never);
      const streamed = await streamedCalls({ ...params, seed, tool_choice: "required" });
      expect(streamed.calls.length).toBe(calls.length);
      for (const call of streamed.calls) checkCall(call);
      // Without parallel calls the grammar ends after the first call, bias or not.
      const single = await client.chat.completions.create({
        ...params,
        seed,
        tool_choice: "required",
        parallel_tool_calls: false,
      });
      expect(single.choices[0]!.finish_reason).toBe("tool_calls");
      expect(single.choices[0]!.message.tool_calls).toHaveLength(1);
      checkCall(single.choices[0]!.message.tool_calls![0] as never);
    }
  });

  it("tool and assistant tool_calls turns in the history are accepted (auto answers text or a call)", async () => {
    const res = await client.chat.completions.create({
      ...base,
      seed: 3,
      tool_choice: "auto",
      max_tokens: 20,
      messages: [
        ...toolMessages,
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "call_1",
              type: "function",
              function: { name: "weather", arguments: '{"city":"Paris","days":1}' },
            },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: "sunny" },
      ],
    });
    const choice = res.choices[0]!;
    expect(["stop", "length", "tool_calls"]).toContain(choice.finish_reason);
    if (choice.finish_reason === "tool_calls")
      for (const call of choice.message.tool_calls!) checkCall(call as never);
    else expect(typeof choice.message.content).toBe("string");
  });
});

describe("compiling a new schema", { timeout: 60_000 }, () => {
  it("never holds up other requests' tokens: the router admits a request once its grammar is compiled", async () => {
    // Hundreds of bounded strings: seconds to compile, even on 512 tokens.
    const properties: Schema = {};
    for (let i = 0; i < 450; i++) properties[`slow_${i}`] = { type: "string", maxLength: 4 };
    const slow = { type: "object", properties, required: ["slow_0"], additionalProperties: false };
    const running = await client.completions.create({
      model: MODEL,
      prompt: "Once upon a time",
      max_tokens: 400,
      stream: true,
      ignore_eos: true, // vLLM's extra sampling parameter
    } as OpenAI.CompletionCreateParamsStreaming);
    const arrivals: number[] = [];
    let sentAt = Number.POSITIVE_INFINITY;
    let constrained: Promise<number> | null = null;
    for await (const chunk of running) {
      if (chunk.choices[0]?.text) arrivals.push(performance.now());
      if (arrivals.length === 5 && constrained === null) {
        sentAt = performance.now();
        constrained = client.chat.completions
          .create({
            model: MODEL,
            messages,
            max_tokens: 8,
            response_format: {
              type: "json_schema",
              json_schema: { name: "slow", schema: slow, strict: true },
            },
          })
          .then(() => performance.now());
      }
    }
    const answeredAt = await constrained!;
    // The running stream went on while the schema compiled: no pause between two of its tokens
    // comes near the compile (a compile inside a step would pause it for most of the wait).
    const window = arrivals.filter((t) => t > sentAt && t < answeredAt);
    const gaps = window.slice(1).map((t, i) => t - window[i]!);
    expect(window.length).toBeGreaterThanOrEqual(20);
    expect(Math.max(...gaps)).toBeLessThan((answeredAt - sentAt) / 3);
  });
});

describe("bad structured-output requests are 400s naming the problem", { timeout: 30_000 }, () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "an unsupported keyword",
      {
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { type: "string", format: "email" } },
        },
      },
      /keyword 'format'/,
    ],
    [
      "contradicting bounds",
      {
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { type: "array", minItems: 3, maxItems: 1 } },
        },
      },
      /minItems \(3\) is greater than maxItems \(1\)/,
    ],
    [
      "a dangling $ref",
      {
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { $ref: "#/$defs/nope" } },
        },
      },
      /does not resolve/,
    ],
    [
      "an unknown response_format type",
      { response_format: { type: "yaml" } },
      /response_format\.type/,
    ],
    ["a bad regex", { structured_outputs: { regex: "(" } }, /structured_outputs\.regex/],
    [
      "an EBNF grammar the engine rejects",
      { structured_outputs: { grammar: "root ::= (" } },
      /grammar/,
    ],
    [
      "a tool_choice naming no tool",
      { tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } },
      /no tool named 'nope'/,
    ],
    ["tool_choice without tools", { tool_choice: "required" }, /tool_choice/],
  ];
  for (const [what, extra, message] of cases) {
    it(what, async () => {
      const err = await client.chat.completions
        .create({
          model: MODEL,
          messages,
          max_tokens: 10,
          ...extra,
        } as OpenAI.ChatCompletionCreateParamsNonStreaming)
        .then(
          () => null,
          (e: unknown) => e as { status?: number; message?: string },
        );
      expect(err?.status).toBe(400);
      expect(err?.message).toMatch(message);
    });
  }
});
