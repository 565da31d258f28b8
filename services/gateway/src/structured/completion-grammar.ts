import { type GrammarSpec, KilnError } from "@kiln/proto";
import {
  grammarFromResponseFormat,
  grammarFromStructuredOutputs,
  jsonSchemaGrammar,
} from "./response-format";

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
