import { randomBytes } from "node:crypto";
import type { KilnError } from "@kiln/proto";
import type { ChoiceDelta } from "../generation";
import { UsageCounter } from "../routes/respond";
import { mayBeToolCall, type ParsedToolCall, parseToolCalls } from "./tool-calls";

/** One typed streaming event (`type` plus its fields; sequence_number is added on emit). */
export type ResponseEvent = { readonly type: string } & Record<string, unknown>;

export type ResponseStatus =
  | "queued"
  | "in_progress"
  | "completed"
  | "incomplete"
  | "cancelled"
  | "failed";

/** The Response object (OpenAI's shape); `output`, `status`, `usage` change as it runs. */
export type ResponseObject = Record<string, unknown> & {
  readonly id: string;
  status: ResponseStatus;
  output: unknown[];
};

export const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

interface MessageState {
  readonly id: string;
  readonly outputIndex: number;
  text: string;
}

/**
 * Folds one generation's deltas into a Response, emitting the typed event sequence:
 * response.created, response.in_progress, then per output item output_item.added,
 * (content_part.added, output_text.delta*, output_text.done, content_part.done |
 * function_call_arguments.delta, function_call_arguments.done), output_item.done, and finally
 * response.completed / response.incomplete / response.cancelled, or `error` then
 * response.failed.
 *
 * With function tools, an output that may still be a tool call (it starts with `{`, `[` or
 * `<tool_call>`) is held back until the generation ends, then parsed once.
 */
export class ResponseBuilder {
  private numEvents = 0;
  private message: MessageState | null = null;
  private heldText = "";
  private isHolding: boolean;
  private finishReason: ChoiceDelta["finishReason"] = null;
  readonly usage: UsageCounter;

  constructor(
    readonly response: ResponseObject,
    numPromptTokens: number,
    private readonly toolNames: ReadonlySet<string>,
    private readonly emit: (event: ResponseEvent) => void = () => {},
  ) {
    this.usage = new UsageCounter(numPromptTokens);
    this.isHolding = toolNames.size > 0;
  }

  /** The events before any output. */
  start(): void {
    this.send({ type: "response.created", response: this.snapshot() });
    this.response.status = "in_progress";
    this.send({ type: "response.in_progress", response: this.snapshot() });
  }

  onDelta(delta: ChoiceDelta): void {
    this.usage.count(delta);
    if (delta.finishReason) this.finishReason = delta.finishReason;
    if (!delta.text) return;
    if (this.isHolding) {
      this.heldText += delta.text;
      if (mayBeToolCall(this.heldText)) return;
      this.isHolding = false;
      this.appendText(this.heldText);
      return;
    }
    this.appendText(delta.text);
  }

  /** Ends the response after the last delta; returns it with its final status. */
  finish(): ResponseObject {
    const calls = this.heldText ? parseToolCalls(this.heldText, this.toolNames) : null;
    if (calls) {
      for (const call of calls) this.addFunctionCall(call);
    } else {
      if (this.heldText) this.appendText(this.heldText);
      if (!this.message) this.openMessage();
      this.closeMessage();
    }
    const isCut = this.finishReason === "length";
    this.response.status = isCut ? "incomplete" : "completed";
    this.response.incomplete_details = isCut ? { reason: "max_output_tokens" } : null;
    this.response.usage = this.usageJSON();
    this.send({ type: `response.${this.response.status}`, response: this.snapshot() });
    return this.response;
  }

  /** Ends the response as cancelled (background cancel) or failed (an error mid-way). */
  fail(status: "cancelled" | "failed", err?: KilnError): ResponseObject {
    if (this.message) this.closeMessage();
    this.response.status = status;
    this.response.usage = this.usageJSON();
    if (err) {
      const error = { code: err.code.toLowerCase(), message: err.message };
      this.response.error = error;
      this.send({ type: "error", ...error, param: err.param });
    }
    this.send({ type: `response.${status}`, response: this.snapshot() });
    return this.response;
  }

  usageJSON() {
    const u = this.usage.toJSON();
    return {
      input_tokens: u.prompt_tokens,
      input_tokens_details: { cached_tokens: u.prompt_tokens_details.cached_tokens },
      output_tokens: u.completion_tokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: u.total_tokens,
    };
  }

  private send(event: ResponseEvent): void {
    this.emit({ ...event, sequence_number: this.numEvents++ });
  }

  private snapshot(): ResponseObject {
    return structuredClone(this.response);
  }

  private appendText(text: string): void {
    if (!this.message) this.openMessage();
    const m = this.message!;
    m.text += text;
    this.send({
      type: "response.output_text.delta",
      item_id: m.id,
      output_index: m.outputIndex,
      content_index: 0,
      delta: text,
      logprobs: [],
    });
  }

  private openMessage(): void {
    const m: MessageState = {
      id: newId("msg"),
      outputIndex: this.response.output.length,
      text: "",
    };
    this.message = m;
    const item = {
      id: m.id,
      type: "message",
      status: "in_progress",
      role: "assistant",
      content: [],
    };
    this.response.output.push(item);
    this.send({ type: "response.output_item.added", output_index: m.outputIndex, item });
    this.send({
      type: "response.content_part.added",
      item_id: m.id,
      output_index: m.outputIndex,
      content_index: 0,
      part: textPart(""),
    });
  }

  private closeMessage(): void {
    const m = this.message!;
    const where = { item_id: m.id, output_index: m.outputIndex, content_index: 0 };
    this.send({ type: "response.output_text.done", ...where, text: m.text, logprobs: [] });
    this.send({ type: "response.content_part.done", ...where, part: textPart(m.text) });
    const status = this.finishReason === "length" ? "incomplete" : "completed";
    const item = {
      id: m.id,
      type: "message",
      status,
      role: "assistant",
      content: [textPart(m.text)],
    };
    this.response.output[m.outputIndex] = item;
    this.send({ type: "response.output_item.done", output_index: m.outputIndex, item });
  }

  private addFunctionCall(call: ParsedToolCall): void {
    const outputIndex = this.response.output.length;
    const id = newId("fc");
    const base = { id, type: "function_call", call_id: newId("call"), name: call.name };
    const added = { ...base, arguments: "", status: "in_progress" };
    this.response.output.push(added);
    this.send({ type: "response.output_item.added", output_index: outputIndex, item: added });
    const where = { item_id: id, output_index: outputIndex };
    this.send({ type: "response.function_call_arguments.delta", ...where, delta: call.arguments });
    this.send({
      type: "response.function_call_arguments.done",
      ...where,
      name: call.name,
      arguments: call.arguments,
    });
    const item = { ...base, arguments: call.arguments, status: "completed" };
    this.response.output[outputIndex] = item;
    this.send({ type: "response.output_item.done", output_index: outputIndex, item });
  }
}

function textPart(text: string) {
  return { type: "output_text", text, annotations: [], logprobs: [] };
}
