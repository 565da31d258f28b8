export {
  ALLOWED,
  combineGuards,
  type Guard,
  type GuardMessage,
  type GuardVerdict,
  guardInput,
  guardOutput,
} from "./guard";
export { LlmGuard, type LlmGuardOptions, llamaGuardPrompt } from "./llm-guard";
export { RulesGuard } from "./rules-guard";
