export {
  DEFAULT_GRAMMAR_OPTIONS,
  GrammarCompileError,
  GrammarEngine,
  type GrammarEngineOptions,
  type GrammarVocab,
  MAX_ROLLBACK_TOKENS,
  SequenceGrammar,
} from "./grammar-engine";
export type { MaskJob } from "./grammar-host-protocol";
export {
  DEFAULT_GRAMMAR_THREADS,
  GrammarHosts,
  type GrammarHostsOptions,
} from "./grammar-hosts";
export {
  GRAMMAR_KINDS,
  type GrammarKind,
  type GrammarSpec,
  grammarKey,
  isGrammarKind,
} from "./grammar-spec";
export { loadGrammarVocab } from "./grammar-vocab";
export { loadXGrammar } from "./xgrammar-loader";
