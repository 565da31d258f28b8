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
  .tuple(fc.uniqueArray(fc.tuple(propName, node), { minLength: 1, maxLength: 3, selector: ([k]) => k }), fc.boolean())
  .map(([entries, useDefs]) => {
    const names = entries.map(([k]) => k);
    if (!useDefs) {
      return { type: "object", properties: Object.fromEntries(entries), required: names, additionalProperties: false };
    }
    return {
      $defs: Object.fromEntries(entries.map(([k, s]) => [`d_${k}`, s])),
      type: "object",
      properties: Object.fromEntries(names.map((k) => [k, { $ref: `#/$defs/d_${k}` }])),
      required: names,
      additionalProperties: false,
    };
  });

async function streamedText(params: Record<string, unknown>): Promise<{ text: string; finish: string | null }> {
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
  it("100 random bounded schemas: every output parses, validates with ajv and ends by itself (streamed and not)", async () => {
    const schemas = fc.sample(topSchema, { numRuns: 100, seed: 1234 });
    const failures: string[] = [];
    const run = async (schema: Schema, i: number) => {
      const validate = ajv.compile(schema);
      for (const isStreamed of [false, true]) {
        const { text, finish } = await completeJson(schema, isStreamed, i);
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch {
          failures.push(`#${i} stream=${isStreamed}: not JSON: ${text.slice(0, 300)} for ${JSON.stringify(schema)}`);
          continue;
        }
        if (!validate(value)) {
          failures.push(`#${i} stream=${isStreamed}: ${ajv.errorsText(validate.errors)}: ${text} for ${JSON.stringify(schema)}`);
        }
        if (finish !== "stop") failures.push(`#${i} stream=${isStreamed}: finish_reason ${finish}`);
      }
    };
    for (let i = 0; i < schemas.length; i += 8) {
      await Promise.all(schemas.slice(i, i + 8).map((s, j) => run(s, i + j)));
    }
    expect(failures).toEqual([]);
  }, 240_000);
});
