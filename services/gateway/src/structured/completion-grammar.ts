import { type GrammarSpec, KilnError } from "@kiln/proto";
import {
  grammarFromResponseFormat,
  grammarFromStructuredOutputs,
  jsonSchemaGrammar,
} from "./response-format";
import { checkSchemaSubset } from "./schema-subset";
import { toolCallParser } from "./tool-parsers";

/** `response_format` or `structured_outputs` of a completions request (at most one). */
export function completionGrammar(body: {
  readonly response_format?: unknown;
  readonly structured_outputs?: unknown;
}): GrammarSpec | null {
  const format = grammarFromResponseFormat(body.response_format);
  const outputs = grammarFromStructuredOutputs(body.structured_outputs);
  if (format && outputs) {
    throw new KilnError(
      "INVALID_REQUEST",
      "Set either 'response_format' or 'structured_outputs', not both.",
      "structured_outputs",
    );
  }
  return format ?? outputs;
}

/**
 * The Responses API's `text.format`: `{type: "text"}`, `{type: "json_object"}` or
 * `{type: "json_schema", name, schema, strict}` (the fields sit directly in `format`).
 */
export function responsesTextGrammar(text: unknown): GrammarSpec | null {
  if (text === null || text === undefined) return null;
  if (typeof text !== "object" || Array.isArray(text)) {
    throw new KilnError("INVALID_REQUEST", "Invalid value for 'text': expected an object.", "text");
  }
  const format = (text as { format?: unknown }).format;
  if (format === null || format === undefined) return null;
  const f = format as { type?: unknown; schema?: unknown; strict?: unknown; name?: unknown };
  if (f.type === "json_schema") {
    if (typeof f.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(f.name)) {
      throw new KilnError(
        "INVALID_REQUEST",
        "Invalid value for 'text.format.name': expected 1 to 64 letters, digits, '_' or '-'.",
        "text.format.name",
      );
    }
    return jsonSchemaGrammar(
      f.schema ?? { type: "object" },
      f.strict === true,
      "text.format.schema",
    );
  }
  return grammarFromResponseFormat(format, "text.format");
}

/**
 * The Responses API's `tool_choice: "required"` or a named function: generation constrained to
 * `<tool_call>` blocks (the Hermes format its parser reads) with each function's parameters as
 * the arguments' schema. Null with "auto"/"none" (the output is parsed, not constrained).
 */
export function responsesToolGrammar(
  tools: readonly { readonly name: string; readonly parameters?: Record<string, unknown> | null }[],
  body: { readonly tool_choice?: unknown; readonly parallel_tool_calls?: boolean | null },
): GrammarSpec | null {
  const choice = body.tool_choice;
  const isNamed = typeof choice === "object" && choice !== null;
  if ((choice !== "required" && !isNamed) || tools.length === 0) return null;
  const constrained = tools.map((t, i) => {
    const parameters = t.parameters ?? { type: "object", properties: {} };
    checkSchemaSubset(parameters, `tools[${i}].parameters`);
    return { name: t.name, parameters };
  });
  const isParallel = !isNamed && body.parallel_tool_calls !== false;
  const tag = toolCallParser("hermes").structuralTag(constrained, isParallel);
  return { kind: "structural_tag", text: JSON.stringify(tag), strict: true };
}
