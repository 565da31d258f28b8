import type { FunctionTool } from "../schemas/responses";

/**
 * Function calling without constrained decoding (see docs/api.md, "Function tools").
 *
 * Tools reach the model through the chat template's `tools` variable, in the chat API's
 * shape `{type: "function", function: {name, description, parameters}}`. A template that
 * ignores `tools` (its rendering does not change) gets the fallback instead: a system
 * message, `toolSystemPrompt`, that lists the tools and asks for the format below.
 *
 * The model calls tools by writing, as its whole output, either one or more
 * `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (the Hermes/Qwen
 * convention) or one bare JSON object `{"name": ..., "arguments": {...}}` (or an array of
 * them). `parameters` is accepted for `arguments`. Anything else, or a name that is not a
 * declared tool, is an ordinary text answer.
 */

export interface ParsedToolCall {
  readonly name: string;
  /** The arguments as a JSON text (OpenAI's `arguments` field). */
  readonly arguments: string;
}

/** The tools in the chat API's shape, as HF chat templates expect them. */
export function templateTools(tools: readonly FunctionTool[]): unknown[] {
  return tools.map((t) => ({
    type: "function",
    function: {
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      parameters: t.parameters ?? { type: "object", properties: {} },
    },
  }));
}

/** The fallback system message for templates without tool support. */
export function toolSystemPrompt(tools: readonly FunctionTool[]): string {
  const lines = tools.map((t) => JSON.stringify(templateTools([t])[0]));
  return (
    "You may call these functions:\n" +
    `${lines.join("\n")}\n` +
    "To call one, answer with only " +
    '<tool_call>{"name": <function name>, "arguments": <arguments object>}</tool_call>'
  );
}

/** A call as text in the documented format (how earlier calls are shown to the model). */
export function formatToolCall(call: ParsedToolCall): string {
  return `<tool_call>{"name": ${JSON.stringify(call.name)}, "arguments": ${call.arguments}}</tool_call>`;
}

const TOOL_CALL_BLOCK = /<tool_call>([\s\S]*?)<\/tool_call>/g;

/**
 * The tool calls `text` makes, or null when it is a text answer. Only names in `toolNames`
 * count as calls.
 */
export function parseToolCalls(
  text: string,
  toolNames: ReadonlySet<string>,
): ParsedToolCall[] | null {
  const trimmed = text.trim();
  if (trimmed.startsWith("<tool_call>")) {
    const rest = trimmed.replace(TOOL_CALL_BLOCK, "").trim();
    if (rest !== "") return null;
    const calls = [...trimmed.matchAll(TOOL_CALL_BLOCK)].map((m) =>
      toCall(parseJson(m[1]!), toolNames),
    );
    return calls.length > 0 && calls.every((c) => c !== null) ? (calls as ParsedToolCall[]) : null;
  }
  if (!trimmed.startsWith("{") && !trimmed.startsWith("[")) return null;
  const json = parseJson(trimmed);
  const list = Array.isArray(json) ? json : [json];
  const calls = list.map((c) => toCall(c, toolNames));
  return calls.length > 0 && calls.every((c) => c !== null) ? (calls as ParsedToolCall[]) : null;
}

/**
 * Whether a streamed output that starts with `prefix` might still turn out to be a tool call
 * (so the text must be held back until the output ends).
 */
export function mayBeToolCall(prefix: string): boolean {
  const trimmed = prefix.trimStart();
  if (trimmed === "") return true;
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) return true;
  const tag = "<tool_call>";
  return trimmed.startsWith(tag) || tag.startsWith(trimmed);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function toCall(value: unknown, toolNames: ReadonlySet<string>): ParsedToolCall | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const { name, arguments: args, parameters } = value as Record<string, unknown>;
  if (typeof name !== "string" || !toolNames.has(name)) return null;
  const argValue = args ?? parameters ?? {};
  if (typeof argValue === "string") {
    return parseJson(argValue) === undefined ? null : { name, arguments: argValue };
  }
  if (typeof argValue !== "object" || Array.isArray(argValue)) return null;
  return { name, arguments: JSON.stringify(argValue) };
}
