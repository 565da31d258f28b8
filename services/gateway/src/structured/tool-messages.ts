import { KilnError } from "@kiln/proto";
import type { ChatMessage, ChatToolCall } from "../text-codec";
import type { ToolCallParser } from "./tool-parsers";

interface RawMessage {
  readonly role: string;
  readonly tool_calls?: unknown;
  readonly tool_call_id?: unknown;
}

/**
 * `tool_calls` of an assistant turn and `tool_call_id` of a tool turn, validated (a 400 names the
 * field). Templates with tool support read them as they are.
 */
export function toolFields(
  m: RawMessage,
  at: string,
): { tool_calls?: ChatToolCall[]; tool_call_id?: string } {
  if (m.role === "tool") {
    if (typeof m.tool_call_id !== "string" || m.tool_call_id === "") {
      throw invalid(`${at}.tool_call_id`, "a tool message needs the id of the call it answers");
    }
    return { tool_call_id: m.tool_call_id };
  }
  if (m.tool_call_id !== null && m.tool_call_id !== undefined) {
    throw invalid(`${at}.tool_call_id`, "only tool messages carry a tool_call_id");
  }
  if (m.tool_calls === null || m.tool_calls === undefined) return {};
  if (m.role !== "assistant" || !Array.isArray(m.tool_calls)) {
    throw invalid(`${at}.tool_calls`, "only assistant messages carry a list of tool calls");
  }
  return {
    tool_calls: m.tool_calls.map((call: unknown, j) => {
      const param = `${at}.tool_calls[${j}]`;
      const c = call as {
        id?: unknown;
        type?: unknown;
        function?: { name?: unknown; arguments?: unknown };
      };
      if (
        c === null ||
        typeof c !== "object" ||
        typeof c.id !== "string" ||
        (c.type !== undefined && c.type !== "function") ||
        typeof c.function?.name !== "string" ||
        typeof c.function.arguments !== "string"
      ) {
        throw invalid(
          param,
          'expected {"id", "type": "function", "function": {"name", "arguments"}}',
        );
      }
      return {
        id: c.id,
        type: "function" as const,
        function: { name: c.function.name, arguments: c.function.arguments },
      };
    }),
  };
}

/**
 * The conversation for a template without tool support (docs/api.md, "Tools"): an assistant
 * turn's calls are appended to its content in the parser's format, and a tool turn becomes a
 * user turn `<tool_response>{"tool_call_id": ..., "content": ...}</tool_response>`.
 */
export function plainToolMessages(
  messages: readonly ChatMessage[],
  parser: ToolCallParser,
): ChatMessage[] {
  return messages.map((m): ChatMessage => {
    if (m.role === "tool") {
      const body = JSON.stringify({ tool_call_id: m.tool_call_id, content: m.content });
      return { role: "user", content: `<tool_response>${body}</tool_response>` };
    }
    if (m.tool_calls?.length) {
      const calls = parser.format(m.tool_calls.map((c) => c.function));
      return { role: m.role, content: m.content ? `${m.content}\n${calls}` : calls };
    }
    return m;
  });
}

function invalid(param: string, what: string): KilnError {
  return new KilnError("INVALID_REQUEST", `Invalid value for '${param}': ${what}.`, param);
}
