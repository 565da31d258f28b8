export {
  type ChatMessage,
  type ChatTemplate,
  type ChatTemplateTokens,
  createChatTemplate,
  loadChatTemplate,
  type RenderChatOptions,
} from "./chat-template";
export type { DetokenizerOptions, IncrementalDetokenizer } from "./detokenizer";
export { ChatTemplateError, type ChatTemplateErrorCode } from "./errors";
export {
  type DecodeOptions,
  type EncodeOptions,
  loadTokenizer,
  type Tokenizer,
} from "./tokenizer";
