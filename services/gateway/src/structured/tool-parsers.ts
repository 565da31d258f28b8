/**
 * Tool-call formats (docs/api.md, "Tool parsers"), selected by KILN_TOOL_CALL_PARSER /
 * --tool-call-parser like vLLM's `--tool-call-parser`. A parser knows how its model family
 * writes calls: it parses a finished output (`tool_choice: "auto"`), tells a streamed prefix
 * that may still become a call (so it is held back), writes calls back as text (history on
 * templates without tool support), and gives the structural tag that constrains generation to
 * its format when a call is required (ADR 0016).
 */

export interface ToolCallText {
  readonly name: string;
  /** The arguments as JSON text (OpenAI's `function.arguments`). */
  readonly arguments: string;
}

export interface ParsedOutput {
  /** Text outside the calls, or null when there is none. */
  readonly content: string | null;
  readonly calls: readonly ToolCallText[];
}

export interface ConstrainedTool {
  readonly name: string;
  readonly parameters: unknown;
}

export interface ToolCallParser {
  readonly name: ToolParserName;
  /** The output's calls, or null when it makes none (a text answer). */
  parse(text: string, toolNames: ReadonlySet<string>): ParsedOutput | null;
  /** Whether a streamed output starting with `prefix` may still be (or start with) a call. */
  mayBeToolCall(prefix: string): boolean;
  /** Calls as the model writes them. */
  format(calls: readonly ToolCallText[]): string;
  /** How the fallback system prompt asks for calls. */
  readonly instructions: string;
  /** An XGrammar structural tag: one call (or several with `isParallel`) of `tools`. */
  structuralTag(tools: readonly ConstrainedTool[], isParallel: boolean): unknown;
}

export const TOOL_PARSER_NAMES = ["hermes", "llama3_json", "mistral"] as const;
export type ToolParserName = (typeof TOOL_PARSER_NAMES)[number];

export function isToolParserName(name: string): name is ToolParserName {
  return (TOOL_PARSER_NAMES as readonly string[]).includes(name);
}

export function toolCallParser(name: ToolParserName): ToolCallParser {
  return PARSERS[name];
}

function callTags(
  tools: readonly ConstrainedTool[],
  begin: (name: string) => string,
  end: string,
): unknown[] {
  return tools.map((t) => ({
    type: "tag",
    begin: begin(t.name),
    content: { type: "json_schema", json_schema: t.parameters },
    end,
  }));
}

const HERMES_BLOCK = /<tool_call>([\s\S]*?)<\/tool_call>/g;

const hermes: ToolCallParser = {
  name: "hermes",
  parse(text, toolNames) {
    const calls = [...text.matchAll(HERMES_BLOCK)].map((m) => toCall(parseJson(m[1]!), toolNames));
    if (calls.length === 0 || calls.some((c) => c === null)) return null;
    const rest = text.replace(HERMES_BLOCK, "").trim();
    return { content: rest === "" ? null : rest, calls: calls as ToolCallText[] };
  },
  mayBeToolCall: (prefix) => isTagPrefix(prefix.trimStart(), "<tool_call>"),
  format: (calls) =>
    calls
      .map(
        (c) =>
          `<tool_call>\n{"name": ${JSON.stringify(c.name)}, "arguments": ${c.arguments}}\n</tool_call>`,
      )
      .join("\n"),
  instructions: 'Call one with <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>',
  structuralTag: (tools, isParallel) => ({
    type: "structural_tag",
    format: {
      type: "tags_with_separator",
      tags: callTags(
        tools,
        (n) => `<tool_call>\n{"name": ${JSON.stringify(n)}, "arguments": `,
        "}\n</tool_call>",
      ),
      separator: "\n",
      at_least_one: true,
      stop_after_first: !isParallel,
    },
  }),
};

const llama3Json: ToolCallParser = {
  name: "llama3_json",
  parse(text, toolNames) {
    const trimmed = text.trim().replace(/^<\|python_tag\|>/, "");
    if (!trimmed.startsWith("{")) return null;
    const values = splitJsonObjects(trimmed, ";");
    if (!values) return null;
    const calls = values.map((v) => toCall(parseJson(v), toolNames));
    if (calls.some((c) => c === null)) return null;
    return { content: null, calls: calls as ToolCallText[] };
  },
  mayBeToolCall: (prefix) => {
    const t = prefix.trimStart();
    return t === "" || t.startsWith("{") || isTagPrefix(t, "<|python_tag|>");
  },
  format: (calls) =>
    calls
      .map((c) => `{"name": ${JSON.stringify(c.name)}, "parameters": ${c.arguments}}`)
      .join("; "),
  instructions: 'Call one with only {"name": ..., "parameters": {...}}; separate calls with "; "',
  structuralTag: (tools, isParallel) => ({
    type: "structural_tag",
    format: {
      type: "tags_with_separator",
      tags: callTags(tools, (n) => `{"name": ${JSON.stringify(n)}, "parameters": `, "}"),
      separator: "; ",
      at_least_one: true,
      stop_after_first: !isParallel,
    },
  }),
};

const MISTRAL_TAG = "[TOOL_CALLS]";

const mistral: ToolCallParser = {
  name: "mistral",
  parse(text, toolNames) {
    const at = text.indexOf(MISTRAL_TAG);
    if (at < 0) return null;
    const json = parseJson(text.slice(at + MISTRAL_TAG.length).trim());
    const list = Array.isArray(json) ? json : [json];
    const calls = list.map((c) => toCall(c, toolNames));
    if (calls.length === 0 || calls.some((c) => c === null)) return null;
    const before = text.slice(0, at).trim();
    return { content: before === "" ? null : before, calls: calls as ToolCallText[] };
  },
  mayBeToolCall: (prefix) => isTagPrefix(prefix.trimStart(), MISTRAL_TAG),
  format: (calls) =>
    `${MISTRAL_TAG}[${calls.map((c) => `{"name": ${JSON.stringify(c.name)}, "arguments": ${c.arguments}}`).join(", ")}]`,
  instructions: 'Call them with only [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]',
  structuralTag: (tools, isParallel) => ({
    type: "structural_tag",
    format: {
      type: "sequence",
      elements: [
        { type: "const_string", value: `${MISTRAL_TAG}[` },
        {
          type: "tags_with_separator",
          tags: callTags(tools, (n) => `{"name": ${JSON.stringify(n)}, "arguments": `, "}"),
          separator: ", ",
          at_least_one: true,
          stop_after_first: !isParallel,
        },
        { type: "const_string", value: "]" },
      ],
    },
  }),
};

const PARSERS: Record<ToolParserName, ToolCallParser> = {
  hermes,
  llama3_json: llama3Json,
  mistral,
};

/** `text` is `tag`, starts with it, or is a prefix of it. */
function isTagPrefix(text: string, tag: string): boolean {
  return text.startsWith(tag) || tag.startsWith(text);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `{...} sep {...}` → each object's text, or null when `text` is not only that. */
function splitJsonObjects(text: string, separator: string): string[] | null {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let isInString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (isInString) {
      if (ch === "\\") i++;
      else if (ch === '"') isInString = false;
      continue;
    }
    if (ch === '"') isInString = true;
    else if (ch === "{") {
      if (depth++ === 0) start = i;
    } else if (ch === "}") {
      if (--depth === 0) out.push(text.slice(start, i + 1));
      if (depth < 0) return null;
    } else if (depth === 0 && ch.trim() !== "" && ch !== separator) return null;
  }
  return depth === 0 && out.length > 0 ? out : null;
}

function toCall(value: unknown, toolNames: ReadonlySet<string>): ToolCallText | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const { name, arguments: args, parameters } = value as Record<string, unknown>;
  if (typeof name !== "string" || !toolNames.has(name)) return null;
  const argValue = args ?? parameters ?? {};
  if (typeof argValue === "string") {
    return parseJson(argValue) === undefined ? null : { name, arguments: argValue };
  }
  if (typeof argValue !== "object" || Array.isArray(argValue) || argValue === null) return null;
  return { name, arguments: JSON.stringify(argValue) };
}
