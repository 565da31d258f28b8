import { randomBytes } from "node:crypto";
import { type GrammarSpec, KilnError } from "@kiln/proto";
import type { ChatEncodeOptions, ChatMessage } from "../text-codec";
import { grammarFromResponseFormat, grammarFromStructuredOutputs } from "./response-format";
import { plainToolMessages } from "./tool-messages";
import type { ToolCallParser, ToolCallText } from "./tool-parsers";
import { planTools, type ToolPlan, templateTools, toolsFallbackPrompt } from "./tool-plan";

/** What a chat request asks of structured output and tools, checked (400s name the field). */
export interface ChatStructure {
  readonly grammar: GrammarSpec | null;
  readonly tools: ToolPlan | null;
}

export interface ChatStructureBody {
  readonly tools?: unknown;
  readonly tool_choice?: unknown;
  readonly parallel_tool_calls?: boolean | null;
  readonly response_format?: unknown;
  readonly structured_outputs?: unknown;
}

export function chatStructure(body: ChatStructureBody, parser: ToolCallParser): ChatStructure {
  const tools = planTools(body, parser);
  const format = grammarFromResponseFormat(body.response_format);
  const outputs = grammarFromStructuredOutputs(body.structured_outputs);
  if (format && outputs) {
    throw new KilnError(
      "INVALID_REQUEST",
      "Set either 'response_format' or 'structured_outputs', not both.",
      "structured_outputs",
    );
  }
  const formatGrammar = format ?? outputs;
  if (tools?.grammar && formatGrammar) {
    throw new KilnError(
      "INVALID_REQUEST",
      "A required or named 'tool_choice' cannot be combined with a JSON 'response_format'.",
      "tool_choice",
    );
  }
  return { grammar: tools?.grammar ?? formatGrammar, tools };
}

/** encodeChat options that render the tools (and the tool turns of the history). */
export function chatEncodeOptions(
  messages: readonly ChatMessage[],
  structure: ChatStructure,
  parser: ToolCallParser,
): ChatEncodeOptions {
  const hasToolTurns = messages.some((m) => m.role === "tool" || m.tool_calls?.length);
  const plan = structure.tools;
  return {
    ...(plan
      ? { tools: templateTools(plan.tools), toolsFallbackPrompt: toolsFallbackPrompt(plan) }
      : {}),
    ...(plan || hasToolTurns
      ? { plainMessages: plainToolMessages(messages, plan?.parser ?? parser) }
      : {}),
  };
}

/** One call as the chat API returns it. */
export interface ChatToolCallOut {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; readonly arguments: string };
}

export function toolCallId(): string {
  return `call_${randomBytes(12).toString("hex")}`;
}

export function toolCallsOut(calls: readonly ToolCallText[]): ChatToolCallOut[] {
  return calls.map((c) => ({
    id: toolCallId(),
    type: "function",
    function: { name: c.name, arguments: c.arguments },
  }));
}

/**
 * A finished choice's message and finish reason: with tools, the output parsed for calls
 * (`finish_reason: "tool_calls"` when it makes some).
 */
export function chatChoiceMessage(
  text: string,
  finishReason: string | null,
  plan: ToolPlan | null,
): { message: Record<string, unknown>; finishReason: string | null } {
  const parsed = plan ? plan.parser.parse(text, plan.toolNames) : null;
  if (!parsed) {
    return { message: { role: "assistant", content: text, refusal: null }, finishReason };
  }
  return {
    message: {
      role: "assistant",
      content: parsed.content,
      refusal: null,
      tool_calls: toolCallsOut(parsed.calls),
    },
    finishReason: finishReason === "length" ? "length" : "tool_calls",
  };
}
