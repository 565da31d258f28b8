import { KilnError } from "@kiln/proto";
import { z } from "zod";
import { offWhenNull, parseBody, rejectUnsupported, type UnsupportedRule } from "./common";

/** Built-in tools OpenAI runs server-side; Kiln cannot, and says so with a 400. */
const BUILT_IN_TOOLS = new Set([
  "web_search",
  "web_search_preview",
  "web_search_preview_2025_03_11",
  "file_search",
  "code_interpreter",
  "computer_use_preview",
  "image_generation",
  "local_shell",
  "mcp",
]);

const textPart = z.looseObject({
  type: z.enum(["input_text", "output_text", "text", "refusal"]),
  text: z.string().optional(),
  refusal: z.string().optional(),
});

const contentPart = z.union([textPart, z.looseObject({ type: z.string() })]);

const messageItem = z.looseObject({
  type: z.literal("message").optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(contentPart)]),
});

const functionCallItem = z.looseObject({
  type: z.literal("function_call"),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
});

const functionOutputItem = z.looseObject({
  type: z.literal("function_call_output"),
  call_id: z.string(),
  output: z.union([z.string(), z.array(contentPart)]),
});

const inputItem = z.union([messageItem, functionCallItem, functionOutputItem], {
  error:
    "each input item must be a message ({role, content}), a function_call or a function_call_output",
});

const functionTool = z.strictObject({
  type: z.literal("function"),
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, {
    error: "function names are 1-64 characters of a-z, A-Z, 0-9, _ and -",
  }),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.strictObject({ type: z.literal("function"), name: z.string() }),
]);

const responsesSchema = z.strictObject({
  model: z.string({ error: "`model` is required and must be a string" }),
  input: z.union([z.string(), z.array(inputItem)]),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  tools: z.array(z.looseObject({ type: z.string() })).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  max_tool_calls: z.number().int().min(1).nullish(),
  previous_response_id: z.string().nullish(),
  store: z.boolean().nullish(),
  background: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().nullish(),
  safety_identifier: z.string().nullish(),
  prompt_cache_key: z.string().nullish(),
  service_tier: z.enum(["auto", "default"]).nullish(),
  truncation: z.enum(["disabled", "auto"]).nullish(),
  include: z.array(z.string()).nullish(),
  // Known but unsupported: accepted by the schema, rejected by name below unless "off".
  text: z.unknown().optional(),
  reasoning: z.unknown().optional(),
  top_logprobs: z.unknown().optional(),
  prompt: z.unknown().optional(),
  conversation: z.unknown().optional(),
  stream_options: z.unknown().optional(),
});

export type ResponsesBody = z.infer<typeof responsesSchema>;
export type InputItem = z.infer<typeof inputItem>;
export type FunctionTool = z.infer<typeof functionTool>;
export type ToolChoice = z.infer<typeof toolChoice>;

const isEmptyObject = (v: unknown) =>
  v === null ||
  v === undefined ||
  (typeof v === "object" && Object.values(v).every((x) => x === null || x === undefined));

const RESPONSES_UNSUPPORTED: readonly UnsupportedRule[] = [
  { param: "reasoning", isOff: isEmptyObject, hint: "Kiln serves no reasoning models." },
  { param: "top_logprobs", isOff: (v) => v === null || v === undefined || v === 0 },
  offWhenNull("prompt", "Stored prompt templates are an OpenAI platform feature."),
  offWhenNull("conversation", "Use previous_response_id to chain responses."),
  offWhenNull("stream_options"),
];

/** The validated body, with function tools checked (built-in tools are a 400). */
export interface ParsedResponsesBody {
  readonly body: ResponsesBody;
  readonly tools: readonly FunctionTool[];
}

/** Validates a Responses API body; throws KilnError("INVALID_REQUEST") naming the param. */
export function parseResponsesBody(raw: unknown): ParsedResponsesBody {
  const body = parseBody(responsesSchema, raw);
  rejectUnsupported(body, RESPONSES_UNSUPPORTED);
  const tools = (body.tools ?? []).map((tool, i) => parseTool(tool, i));
  const choice = body.tool_choice;
  if (typeof choice === "object" && choice && !tools.some((t) => t.name === choice.name)) {
    throw new KilnError(
      "INVALID_REQUEST",
      `Tool choice '${choice.name}' is not one of the function tools in 'tools'.`,
      "tool_choice",
    );
  }
  if (body.background && body.stream) {
    throw new KilnError(
      "INVALID_REQUEST",
      "Kiln does not stream background responses: set stream or background, not both.",
      "background",
    );
  }
  if (body.background && body.store === false) {
    throw new KilnError(
      "INVALID_REQUEST",
      "A background response must be stored (store cannot be false).",
      "store",
    );
  }
  return { body, tools };
}

function parseTool(tool: { type: string }, index: number): FunctionTool {
  const param = `tools[${index}]`;
  if (BUILT_IN_TOOLS.has(tool.type)) {
    throw new KilnError(
      "INVALID_REQUEST",
      `The built-in tool '${tool.type}' is not supported: Kiln runs no server-side tools. ` +
        "Declare a function tool and run it yourself.",
      `${param}.type`,
    );
  }
  const parsed = functionTool.safeParse(tool);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${param}.${issue.path.join(".")}` : param;
    const what = tool.type === "function" ? issue?.message : `unknown tool type '${tool.type}'`;
    throw new KilnError("INVALID_REQUEST", `Invalid value for '${where}': ${what}`, where);
  }
  return parsed.data;
}
