/**
 * Why a chat template could not produce a prompt. Every code crosses the process boundary
 * (the gateway maps it to an HTTP status), so each says whose fault it is.
 */
export type ChatTemplateErrorCode =
  /** The model ships no chat template (or several, none named "default", and none was
   * asked for by name). The client should call the completions endpoint instead: 400. */
  | "NO_CHAT_TEMPLATE"
  /** The template called `raise_exception(message)`: the conversation breaks a rule of the
   * template (for example roles that do not alternate). The client's fault: 400. */
  | "CHAT_TEMPLATE_REJECTED"
  /** The template could not be parsed or failed while rendering. The model's fault: 500. */
  | "CHAT_TEMPLATE_FAILED";

/**
 * Raised by chat-template rendering. ModelError's codes describe model files; these describe
 * a render, so they live in their own class. `message` is safe to show to the client (for
 * CHAT_TEMPLATE_REJECTED it is the template's own message).
 */
export class ChatTemplateError extends Error {
  readonly code: ChatTemplateErrorCode;

  constructor(code: ChatTemplateErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ChatTemplateError";
    this.code = code;
  }
}
