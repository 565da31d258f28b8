/**
 * What a sequence's output must match (ADR 0016). The gateway builds it from `response_format`,
 * `structured_outputs` or `tools`; the router carries it unchanged to the worker, which compiles
 * it against the model's vocabulary.
 *
 * - `json_schema`: `text` is a JSON Schema (the gateway has checked it is in the supported subset).
 * - `json_object`: any JSON object; `text` is ignored.
 * - `regex`: `text` is a regular expression the whole output must match.
 * - `ebnf`: `text` is an EBNF grammar (GBNF syntax) whose start rule is `root`.
 * - `structural_tag`: `text` is an XGrammar structural tag (JSON): literal text around JSON
 *   Schema parts, used for tool calls.
 */
export type GrammarKind = "json_schema" | "json_object" | "regex" | "ebnf" | "structural_tag";

export const GRAMMAR_KINDS: readonly GrammarKind[] = [
  "json_schema",
  "json_object",
  "regex",
  "ebnf",
  "structural_tag",
];

export interface GrammarSpec {
  readonly kind: GrammarKind;
  readonly text: string;
  /** JSON Schema strict mode: properties and items not named by the schema are not allowed. */
  readonly strict: boolean;
}

/** The compiled-grammar cache key: two specs with one key compile to the same grammar. */
export function grammarKey(spec: GrammarSpec): string {
  return `${spec.kind}\u0000${spec.strict ? 1 : 0}\u0000${spec.kind === "json_object" ? "" : spec.text}`;
}

export function isGrammarKind(kind: string): kind is GrammarKind {
  return (GRAMMAR_KINDS as readonly string[]).includes(kind);
}
