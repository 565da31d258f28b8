import { describe, expect, it } from "vitest";
import { chatChoiceMessage } from "./chat-structure";
import { checkSchemaSubset } from "./schema-subset";
import { TOOL_PARSER_NAMES, toolCallParser } from "./tool-parsers";
import { planTools } from "./tool-plan";
import { ToolStream } from "./tool-stream";

const names = new Set(["weather", "time"]);
const calls = [
  { name: "weather", arguments: '{"city":"Oslo"}' },
  { name: "time", arguments: '{"zone":"utc"}' },
];

describe("tool-call parsers", () => {
  for (const name of TOOL_PARSER_NAMES) {
    it(`${name}: parses what it formats, and plain text is no call`, () => {
      const parser = toolCallParser(name);
      const text = parser.format(calls);
      expect(parser.parse(text, names)).toEqual({ content: null, calls });
      expect(parser.mayBeToolCall(text.slice(0, 3))).toBe(true);
      expect(parser.parse("Once upon a time", names)).toBeNull();
      expect(parser.mayBeToolCall("Once upon")).toBe(false);
      expect(parser.parse(parser.format([{ name: "nope", arguments: "{}" }]), names)).toBeNull();
    });
  }

  it("hermes keeps text around the calls as content; llama3_json takes 'parameters'", () => {
    const hermes = toolCallParser("hermes");
    expect(
      hermes.parse('Sure.\n<tool_call>\n{"name": "time", "arguments": {}}\n</tool_call>', names),
    ).toEqual({ content: "Sure.", calls: [{ name: "time", arguments: "{}" }] });
    const llama = toolCallParser("llama3_json");
    expect(llama.parse('{"name": "time", "parameters": {"zone": "cet"}}', names)?.calls).toEqual([
      { name: "time", arguments: '{"zone":"cet"}' },
    ]);
  });
});

describe("tool plans", () => {
  const tools = [
    { type: "function", function: { name: "weather", parameters: { type: "object" } } },
    { type: "function", function: { name: "time" } },
  ];
  const hermes = toolCallParser("hermes");

  it("none and no tools plan nothing; auto renders without a grammar; required and named constrain", () => {
    expect(planTools({ tools, tool_choice: "none" }, hermes)).toBeNull();
    expect(planTools({}, hermes)).toBeNull();
    expect(planTools({ tools }, hermes)?.grammar).toBeNull();
    const required = planTools({ tools, tool_choice: "required" }, hermes)!;
    expect(required.grammar?.kind).toBe("structural_tag");
    expect(JSON.parse(required.grammar!.text).format.stop_after_first).toBe(false);
    const named = planTools(
      { tools, tool_choice: { type: "function", function: { name: "time" } } },
      hermes,
    )!;
    expect([...named.toolNames]).toEqual(["time"]);
    expect(JSON.parse(named.grammar!.text).format.stop_after_first).toBe(true);
    const single = planTools(
      { tools, tool_choice: "required", parallel_tool_calls: false },
      hermes,
    );
    expect(JSON.parse(single!.grammar!.text).format.stop_after_first).toBe(true);
  });

  it("a finished output with calls gets tool_calls and finish_reason tool_calls", () => {
    const plan = planTools({ tools, tool_choice: "required" }, hermes)!;
    const { message, finishReason } = chatChoiceMessage(hermes.format([calls[1]!]), "stop", plan);
    expect(finishReason).toBe("tool_calls");
    expect(message).toMatchObject({
      content: null,
      tool_calls: [{ type: "function", function: calls[1] }],
    });
  });

  it("streams text at once when it cannot be a call, and calls as id+name then argument fragments", () => {
    const plan = planTools({ tools }, hermes)!;
    const text = new ToolStream(plan);
    expect(text.push(0, "Once", null)).toEqual([
      { delta: { content: "Once" }, finishReason: null },
    ]);
    expect(text.push(0, "", "stop")).toEqual([{ delta: {}, finishReason: "stop" }]);
    const stream = new ToolStream(plan);
    const formatted = hermes.format([calls[0]!]);
    expect(stream.push(0, formatted.slice(0, 5), null)).toEqual([]);
    const out = stream.push(0, formatted.slice(5), "stop");
    const head = out[0]!.delta.tool_calls as { index: number; id: string; function: object }[];
    expect(head[0]).toMatchObject({
      index: 0,
      type: "function",
      function: { name: "weather", arguments: "" },
    });
    expect(head[0]!.id).toMatch(/^call_/);
    const args = out
      .slice(1, -1)
      .map(
        (c) => (c.delta.tool_calls as { function: { arguments: string } }[])[0]!.function.arguments,
      )
      .join("");
    expect(args).toBe(calls[0]!.arguments);
    expect(out.at(-1)).toEqual({ delta: {}, finishReason: "tool_calls" });
  });
});

describe("the supported JSON Schema subset", () => {
  it("names the unsupported keyword and its path", () => {
    expect(() =>
      checkSchemaSubset(
        { type: "object", properties: { a: { type: "string", format: "email" } } },
        "p",
      ),
    ).toThrow(/keyword 'format' at #\/properties\/a/);
    expect(() => checkSchemaSubset({ allOf: [] }, "p")).toThrow(/keyword 'allOf'/);
  });

  it("accepts the documented keywords, $ref into $defs included", () => {
    expect(() =>
      checkSchemaSubset(
        {
          $defs: { n: { type: "integer", minimum: 0, maximum: 3 } },
          type: "object",
          properties: {
            a: { $ref: "#/$defs/n" },
            b: { type: "array", items: { enum: ["x", 1] }, minItems: 1, maxItems: 2 },
            c: { anyOf: [{ type: "string", pattern: "^a+$", maxLength: 4 }, { const: null }] },
          },
          required: ["a"],
          additionalProperties: false,
        },
        "p",
      ),
    ).not.toThrow();
  });
});
