import { toolCallsOut } from "./chat-structure";
import type { ToolPlan } from "./tool-plan";

/** One choice-level delta of a chat.completion.chunk. */
export interface ChoiceChunk {
  readonly delta: Record<string, unknown>;
  readonly finishReason: string | null;
}

/** Arguments are streamed in fragments of at most this many characters. */
const ARGUMENT_FRAGMENT_LEN = 16;

/**
 * Streams a chat choice that may call tools, in OpenAI's shape: text that cannot be a call any
 * more goes out as `content` at once; text that may still be one (the parser's
 * `mayBeToolCall`, or every token when a call is required) is held until the choice ends, then
 * each call goes out as `{index, id, type, function: {name, arguments: ""}}` followed by
 * `{index, function: {arguments: <fragment>}}` deltas, and the finish reason is "tool_calls".
 * One per request; choices are keyed by index.
 */
export class ToolStream {
  private readonly indexToHeld = new Map<number, string | null>();

  constructor(private readonly plan: ToolPlan) {}

  push(index: number, text: string, finishReason: string | null): ChoiceChunk[] {
    let held: string | null = this.indexToHeld.has(index) ? this.indexToHeld.get(index)! : "";
    const out: ChoiceChunk[] = [];
    if (held === null) {
      if (text) out.push({ delta: { content: text }, finishReason: null });
    } else {
      held += text;
      if (!this.plan.isCallRequired && !this.plan.parser.mayBeToolCall(held)) {
        if (held) out.push({ delta: { content: held }, finishReason: null });
        held = null;
      }
    }
    this.indexToHeld.set(index, held);
    if (finishReason === null) return out;
    if (held === null || held === "") {
      out.push({ delta: {}, finishReason });
      return out;
    }
    return [...out, ...this.finish(held, finishReason)];
  }

  private finish(held: string, finishReason: string): ChoiceChunk[] {
    const parsed = this.plan.parser.parse(held, this.plan.toolNames);
    if (!parsed) {
      return [
        { delta: { content: held }, finishReason: null },
        { delta: {}, finishReason },
      ];
    }
    const out: ChoiceChunk[] = [];
    if (parsed.content) out.push({ delta: { content: parsed.content }, finishReason: null });
    toolCallsOut(parsed.calls).forEach((call, i) => {
      out.push({
        delta: {
          tool_calls: [
            {
              index: i,
              id: call.id,
              type: "function",
              function: { name: call.function.name, arguments: "" },
            },
          ],
        },
        finishReason: null,
      });
      const args = call.function.arguments;
      for (let at = 0; at < args.length; at += ARGUMENT_FRAGMENT_LEN) {
        const fragment = args.slice(at, at + ARGUMENT_FRAGMENT_LEN);
        out.push({
          delta: { tool_calls: [{ index: i, function: { arguments: fragment } }] },
          finishReason: null,
        });
      }
    });
    out.push({ delta: {}, finishReason: finishReason === "length" ? "length" : "tool_calls" });
    return out;
  }
}
