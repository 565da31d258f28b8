import { KilnError } from "@kiln/proto";
import type { InputItem, ResponsesBody } from "../schemas/responses";
import type { ChatMessage } from "../text-codec";
import { formatToolCall } from "./tool-calls";

/**
 * Responses API input → chat messages for the template. Function calls and their outputs
 * become text turns in the documented tool-call format (see tool-calls.ts): a
 * `function_call` is an assistant turn `<tool_call>{...}</tool_call>`, a
 * `function_call_output` a user turn `<tool_response>...</tool_response>`, so every chat
 * template can render them.
 */
export function inputMessages(input: ResponsesBody["input"]): ChatMessage[] {
  if (typeof input === "string") return [{ role: "user", content: input }];
  return input.map((item, i) => itemMessage(item, i));
}

/** The messages a request renders: instructions first (as a system message), then history. */
export function promptMessages(
  instructions: string | null | undefined,
  history: readonly ChatMessage[],
): ChatMessage[] {
  const system: ChatMessage[] = instructions ? [{ role: "system", content: instructions }] : [];
  return [...system, ...history];
}

function itemMessage(item: InputItem, index: number): ChatMessage {
  if ("role" in item && item.type !== "function_call" && item.type !== "function_call_output") {
    return { role: item.role, content: contentText(item.content, `input[${index}].content`) };
  }
  if (item.type === "function_call") {
    return {
      role: "assistant",
      content: formatToolCall({ name: item.name, arguments: item.arguments }),
    };
  }
  if (item.type === "function_call_output") {
    const output = contentText(item.output, `input[${index}].output`);
    return { role: "user", content: `<tool_response>\n${output}\n</tool_response>` };
  }
  throw new KilnError("INVALID_REQUEST", `Invalid value for 'input[${index}]'.`, `input[${index}]`);
}

function contentText(content: string | readonly { type: string }[], param: string): string {
  if (typeof content === "string") return content;
  return content
    .map((part, i) => {
      const p = part as { type: string; text?: string; refusal?: string };
      if (p.type === "input_text" || p.type === "output_text" || p.type === "text") {
        return p.text ?? "";
      }
      if (p.type === "refusal") return p.refusal ?? "";
      throw new KilnError(
        "INVALID_REQUEST",
        `Content of type '${p.type}' is not supported: Kiln serves text-only models.`,
        `${param}[${i}].type`,
      );
    })
    .join("");
}
