import { KilnError } from "@kiln/proto";
import { z } from "zod";
import { toolFields } from "../structured/tool-messages";
import type { ChatMessage } from "../text-codec";
import {
  MAX_TOP_LOGPROBS,
  offWhenNull,
  parseBody,
  rejectUnsupported,
  samplingFields,
  type UnsupportedRule,
} from "./common";

const message = z.strictObject({
  role: z.string(),
  content: z.unknown().optional(),
  name: z.string().nullish(),
  refusal: z.string().nullish(),
  tool_calls: z.unknown().optional(),
  tool_call_id: z.unknown().optional(),
  function_call: z.unknown().optional(),
  audio: z.unknown().optional(),
});

const chatSchema = z.strictObject({
  ...samplingFields,
  messages: z.array(message).min(1, { error: "`messages` must hold at least one message" }),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  service_tier: z.enum(["auto", "default"]).nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  // Structured output and tools (ADR 0016): checked in structured/.
  tools: z.unknown().optional(),
  tool_choice: z.unknown().optional(),
  response_format: z.unknown().optional(),
  structured_outputs: z.unknown().optional(),
  // Known but unsupported: accepted by the schema, rejected by name below unless "off".
  functions: z.unknown().optional(),
  function_call: z.unknown().optional(),
  store: z.unknown().optional(),
  modalities: z.unknown().optional(),
  audio: z.unknown().optional(),
  prediction: z.unknown().optional(),
  reasoning_effort: z.unknown().optional(),
  web_search_options: z.unknown().optional(),
  verbosity: z.unknown().optional(),
});

export type ChatBody = z.infer<typeof chatSchema>;

const isEmptyList = (v: unknown) =>
  v === null || v === undefined || (Array.isArray(v) && !v.length);

const CHAT_UNSUPPORTED: readonly UnsupportedRule[] = [
  { param: "functions", isOff: isEmptyList },
  { param: "function_call", isOff: (v) => v === null || v === undefined || v === "none" },
  { param: "store", isOff: (v) => v === null || v === undefined || v === false },
  {
    param: "modalities",
    isOff: (v) =>
      v === null || v === undefined || (Array.isArray(v) && v.every((m) => m === "text")),
  },
  offWhenNull("audio"),
  offWhenNull("prediction"),
  offWhenNull("reasoning_effort"),
  offWhenNull("web_search_options"),
  offWhenNull("verbosity"),
];

/** Validates a chat completion body; throws KilnError("INVALID_REQUEST") naming the param. */
export function parseChatBody(body: unknown): ChatBody {
  const parsed = parseBody(chatSchema, body);
  rejectUnsupported(parsed, CHAT_UNSUPPORTED);
  if (parsed.top_logprobs && !parsed.logprobs) {
    throw new KilnError(
      "INVALID_REQUEST",
      "'top_logprobs' requires 'logprobs' to be true.",
      "top_logprobs",
    );
  }
  return parsed;
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

/**
 * The validated messages as the chat template sees them: roles checked, content flattened,
 * assistant `tool_calls` and `tool` turns' `tool_call_id` kept (structured/tool-messages.ts).
 */
export function normalizeMessages(messages: ChatBody["messages"]): ChatMessage[] {
  return messages.map((m, i) => {
    const at = `messages[${i}]`;
    if (!ROLES.has(m.role)) {
      throw new KilnError(
        "INVALID_REQUEST",
        m.role === "function"
          ? `Role 'function' is not supported by Kiln; use 'tool'.`
          : `Invalid value for '${at}.role': expected one of system, developer, user, assistant, tool.`,
        `${at}.role`,
      );
    }
    for (const key of ["function_call", "audio"] as const) {
      if (m[key] !== null && m[key] !== undefined) {
        throw new KilnError(
          "INVALID_REQUEST",
          `'${at}.${key}' is not supported by Kiln yet.`,
          `${at}.${key}`,
        );
      }
    }
    const hasCalls =
      m.role === "assistant" && Array.isArray(m.tool_calls) && m.tool_calls.length > 0;
    const content =
      hasCalls && (m.content === null || m.content === undefined)
        ? ""
        : flattenContent(m.content, m.role, at);
    const role = m.role as ChatMessage["role"];
    return {
      role,
      content,
      ...(m.name ? { name: m.name } : {}),
      ...toolFields(m, at),
    };
  });
}

/** A string, or text parts joined with "\n" (as vLLM does); other part types are a 400. */
function flattenContent(content: unknown, role: string, at: string): string {
  if (typeof content === "string") return content;
  if ((content === null || content === undefined) && role === "assistant") return "";
  if (!Array.isArray(content)) {
    throw new KilnError(
      "INVALID_REQUEST",
      `Invalid value for '${at}.content': expected a string or an array of content parts.`,
      `${at}.content`,
    );
  }
  return content
    .map((part: unknown, j) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      const param = `${at}.content[${j}]`;
      if (p === null || typeof p !== "object") {
        throw new KilnError(
          "INVALID_REQUEST",
          `Invalid value for '${param}': expected an object.`,
          param,
        );
      }
      if (p.type !== "text") {
        throw new KilnError(
          "INVALID_REQUEST",
          `Content part type '${String(p.type)}' is not supported by Kiln yet; only 'text' is.`,
          `${param}.type`,
        );
      }
      if (typeof p.text !== "string") {
        throw new KilnError(
          "INVALID_REQUEST",
          `Invalid value for '${param}.text': expected a string.`,
          `${param}.text`,
        );
      }
      return p.text;
    })
    .join("\n");
}
