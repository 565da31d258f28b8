import { type GrammarSpec, KilnError } from "@kiln/proto";
import { checkSchemaSubset } from "./schema-subset";

/**
 * `response_format` (OpenAI) and `structured_outputs` (vLLM) → the grammar the router and
 * worker enforce (ADR 0016), or null for free text. Every malformed value is a 400 naming the
 * parameter; a schema outside the supported subset names the keyword (schema-subset.ts).
 */
export function grammarFromResponseFormat(
  value: unknown,
  param = "response_format",
): GrammarSpec | null {
  if (value === null || value === undefined) return null;
  if (!isRecord(value)) throw invalid(param, "expected an object with a 'type'");
  switch (value.type) {
    case "text":
      return null;
    case "json_object":
      return { kind: "json_object", text: "", strict: true };
    case "json_schema": {
      const inner = value.json_schema;
      if (!isRecord(inner)) throw invalid(`${param}.json_schema`, "expected an object");
      if (typeof inner.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(inner.name)) {
        throw invalid(
          `${param}.json_schema.name`,
          "expected a name of 1 to 64 letters, digits, '_' or '-'",
        );
      }
      const schema = inner.schema ?? { type: "object" };
      return jsonSchemaGrammar(schema, inner.strict === true, `${param}.json_schema.schema`);
    }
    default:
      throw invalid(`${param}.type`, "expected 'text', 'json_object' or 'json_schema'");
  }
}

/** A JSON Schema (an object, or a JSON text as vLLM accepts) checked against the subset. */
export function jsonSchemaGrammar(schema: unknown, strict: boolean, param: string): GrammarSpec {
  let parsed = schema;
  if (typeof schema === "string") {
    try {
      parsed = JSON.parse(schema);
    } catch {
      throw invalid(param, "expected a JSON Schema (an object or its JSON text)");
    }
  }
  checkSchemaSubset(parsed, param);
  return { kind: "json_schema", text: JSON.stringify(parsed), strict };
}

const STRUCTURED_KEYS = ["json", "regex", "choice", "grammar", "json_object"] as const;

/**
 * vLLM's `structured_outputs`: exactly one of `json` (a schema), `regex`, `choice` (a list of
 * strings, the output is one of them), `grammar` (EBNF, GBNF syntax, start rule `root`) or
 * `json_object: true`. Other vLLM options (`disable_*`, `whitespace_pattern`, `structural_tag`)
 * are a 400 naming them.
 */
export function grammarFromStructuredOutputs(
  value: unknown,
  param = "structured_outputs",
): GrammarSpec | null {
  if (value === null || value === undefined) return null;
  if (!isRecord(value)) throw invalid(param, "expected an object");
  for (const key of Object.keys(value)) {
    if (!(STRUCTURED_KEYS as readonly string[]).includes(key) && value[key] !== null) {
      throw new KilnError(
        "INVALID_REQUEST",
        `'${param}.${key}' is not supported by Kiln; use one of ${STRUCTURED_KEYS.join(", ")}.`,
        `${param}.${key}`,
      );
    }
  }
  const set = STRUCTURED_KEYS.filter(
    (k) => value[k] !== null && value[k] !== undefined && value[k] !== false,
  );
  if (set.length !== 1) throw invalid(param, `set exactly one of ${STRUCTURED_KEYS.join(", ")}`);
  const key = set[0]!;
  const v = value[key];
  switch (key) {
    case "json":
      return jsonSchemaGrammar(v, true, `${param}.json`);
    case "json_object":
      return { kind: "json_object", text: "", strict: true };
    case "regex":
      return { kind: "regex", text: checkRegex(v, `${param}.regex`), strict: true };
    case "choice":
      return { kind: "ebnf", text: choiceGrammar(v, `${param}.choice`), strict: true };
    case "grammar":
      if (typeof v !== "string" || !/\broot\s*::=/.test(v)) {
        throw invalid(`${param}.grammar`, "expected an EBNF grammar with a 'root' rule");
      }
      return { kind: "ebnf", text: v, strict: true };
  }
}

function checkRegex(value: unknown, param: string): string {
  if (typeof value !== "string" || value === "")
    throw invalid(param, "expected a regular expression");
  try {
    new RegExp(value, "u");
  } catch (err) {
    throw invalid(param, `not a valid regular expression (${(err as Error).message})`);
  }
  return value;
}

/** `root ::= "a" | "b"`: JSON string escapes are EBNF string escapes. */
function choiceGrammar(value: unknown, param: string): string {
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every((c) => typeof c === "string" && c !== "")
  ) {
    throw invalid(param, "expected a non-empty list of non-empty strings");
  }
  return `root ::= ${value.map((c) => JSON.stringify(c)).join(" | ")}`;
}

function invalid(param: string, what: string): KilnError {
  return new KilnError("INVALID_REQUEST", `Invalid value for '${param}': ${what}.`, param);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
