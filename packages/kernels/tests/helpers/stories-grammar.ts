import { STORIES_DIR } from "@kiln/test-support";
import { loadGrammarVocab } from "../../src/grammar/grammar-vocab";
import { loadXGrammar } from "../../src/grammar/xgrammar-loader";

/** stories260K's end-of-sequence id: the stop token of the compilers below. */
export const STORIES_EOS = 2;

/**
 * A bare XGrammar compiler on stories260K's 512-token vocabulary, for tests that compare
 * grammars XGrammar compiles directly (no GrammarEngine rewrites in between).
 */
export async function storiesGrammarCompiler() {
  const xg = loadXGrammar();
  const v = await loadGrammarVocab(STORIES_DIR, 512, [STORIES_EOS]);
  const info = await xg.TokenizerInfo.createTokenizerInfo(
    [...v.encodedVocab],
    v.vocabType,
    v.prependSpace,
    512,
    [STORIES_EOS],
  );
  return { xg, compiler: await xg.GrammarCompiler.createGrammarCompiler(info, false) };
}
