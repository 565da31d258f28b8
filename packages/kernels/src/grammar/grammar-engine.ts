import type {
  CompiledGrammar as Compiled,
  GrammarCompiler as Compiler,
  GrammarMatcher as XGrammarMatcher,
} from "@mlc-ai/web-xgrammar";
import { chainBoundedStrings } from "./bounded-strings";
import { type GrammarSpec, grammarKey } from "./grammar-spec";
import { trieLiteralAlternations } from "./literal-trie";
import { loadXGrammar } from "./xgrammar-loader";

type XG = ReturnType<typeof loadXGrammar>;

/** The vocabulary as XGrammar sees it (ADR 0016). */
export interface GrammarVocab {
  /** Token id → its string in tokenizer.json (`▁` and `<0x0A>` forms as stored). */
  readonly encodedVocab: readonly string[];
  /** "byte_fallback" (SentencePiece/Llama-2), "byte_level" (GPT-2/Llama-3) or "raw". */
  readonly vocabType: "byte_fallback" | "byte_level" | "raw";
  /** The tokenizer prepends a space (SentencePiece `▁`) to the text it encodes. */
  readonly prependSpace: boolean;
  /** Rows of the model's logits (may exceed encodedVocab.length: padding ids are never allowed). */
  readonly vocabSize: number;
  /** Ids that end a sequence: allowed exactly when the grammar is complete. */
  readonly stopTokenIds: readonly number[];
}

export interface GrammarEngineOptions {
  /** Most whitespace characters in a row between JSON tokens (KILN_GRAMMAR_MAX_WHITESPACE). */
  readonly maxWhitespace: number;
  /** Compiled grammars kept (KILN_GRAMMAR_CACHE_SIZE); least recently used are dropped. */
  readonly cacheSize: number;
}

export const DEFAULT_GRAMMAR_OPTIONS: GrammarEngineOptions = { maxWhitespace: 2, cacheSize: 256 };

/** A grammar XGrammar refused (a bad regex or EBNF, a schema it cannot express). */
export class GrammarCompileError extends Error {
  override readonly name = "GrammarCompileError";
}

/**
 * Compiles grammar specs against one vocabulary and creates per-sequence matchers. Compiled
 * grammars are cached by spec (`grammarKey`), so a schema is compiled once per process; a
 * compile in progress is shared by every request that asks for the same spec.
 */
export class GrammarEngine {
  private readonly keyToCompiled = new Map<string, Promise<Compiled>>();
  private numCompiles = 0;

  private constructor(
    private readonly xg: XG,
    private readonly compiler: Compiler,
    readonly vocabSize: number,
    private readonly options: GrammarEngineOptions,
  ) {}

  static async create(
    vocab: GrammarVocab,
    options: GrammarEngineOptions = DEFAULT_GRAMMAR_OPTIONS,
  ): Promise<GrammarEngine> {
    const xg = loadXGrammar();
    const info = await xg.TokenizerInfo.createTokenizerInfo(
      [...vocab.encodedVocab],
      vocab.vocabType,
      vocab.prependSpace,
      vocab.vocabSize,
      [...vocab.stopTokenIds],
    );
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
    return new GrammarEngine(xg, compiler, vocab.vocabSize, options);
  }

  /** Grammars compiled so far (cache misses), for metrics and the benchmark. */
  get compileCount(): number {
    return this.numCompiles;
  }

  /** True when `spec` is compiled (or compiling) already. */
  isCached(spec: GrammarSpec): boolean {
    return this.keyToCompiled.has(grammarKey(spec));
  }

  /** The compiled grammar of `spec`, from the cache or compiled now. Rejects with GrammarCompileError. */
  compile(spec: GrammarSpec): Promise<Compiled> {
    const key = grammarKey(spec);
    const hit = this.keyToCompiled.get(key);
    if (hit) {
      // Least recently used order: Map iteration order is insertion order.
      this.keyToCompiled.delete(key);
      this.keyToCompiled.set(key, hit);
      return hit;
    }
    this.numCompiles++;
    const compiled = this.compileUncached(spec);
    this.keyToCompiled.set(key, compiled);
    compiled.catch(() => this.keyToCompiled.delete(key));
    while (this.keyToCompiled.size > this.options.cacheSize) {
      const oldest = this.keyToCompiled.keys().next().value as string;
      this.keyToCompiled.delete(oldest);
    }
    return compiled;
  }

  /** A fresh matcher for one sequence, at the start of the grammar. */
  async createMatcher(spec: GrammarSpec): Promise<SequenceGrammar> {
    const compiled = await this.compile(spec);
    const matcher = await this.xg.GrammarMatcher.createGrammarMatcher(
      compiled,
      undefined,
      false,
      MAX_ROLLBACK_TOKENS,
    );
    return new SequenceGrammar(matcher, this.vocabSize);
  }

  /**
   * XGrammar compiles a structural tag's `json_schema` parts with unbounded whitespace; they
   * become `grammar` parts compiled from the same schema with the whitespace bound.
   */
  private async boundedStructuralTag(node: unknown, strict: boolean): Promise<unknown> {
    if (Array.isArray(node)) {
      return Promise.all(node.map((item) => this.boundedStructuralTag(item, strict)));
    }
    if (node === null || typeof node !== "object") return node;
    const record = node as Record<string, unknown>;
    if (record.type === "json_schema" && "json_schema" in record) {
      return {
        type: "grammar",
        grammar: await this.jsonEbnf(JSON.stringify(record.json_schema), strict),
      };
    }
    if (record.type === "grammar" && typeof record.grammar === "string") {
      return { type: "grammar", grammar: trieLiteralAlternations(record.grammar) };
    }
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(record)) {
      out[key] = key === "json_schema" ? value : await this.boundedStructuralTag(value, strict);
    }
    return out;
  }

  /**
   * A JSON Schema as XGrammar's EBNF with bounded whitespace, literal alternations written as
   * tries (literal-trie.ts: the matcher defect they avoid) and length-bounded strings as chains
   * (bounded-strings.ts: cheap masks inside them).
   */
  private async jsonEbnf(schema: string, strict: boolean): Promise<string> {
    const ebnf = await this.xg.Testings._jsonSchemaToEBNF(
      schema,
      true,
      undefined,
      undefined,
      strict,
      this.options.maxWhitespace,
    );
    // XGrammar's generic `basic_object`/`basic_array` rules (json_object, untyped values) keep
    // unbounded whitespace whatever maxWhitespaceCnt says.
    const ws = `[ \\n\\t]{0,${this.options.maxWhitespace}}`;
    return chainBoundedStrings(trieLiteralAlternations(ebnf.replaceAll("[ \\n\\t]*", ws)));
  }

  private async compileUncached(spec: GrammarSpec): Promise<Compiled> {
    try {
      switch (spec.kind) {
        case "json_schema":
          return await this.compiler.compileGrammar(
            await this.jsonEbnf(spec.text, spec.strict),
            "root",
          );
        case "json_object":
          return await this.compiler.compileGrammar(
            await this.jsonEbnf('{"type":"object"}', true),
            "root",
          );
        case "regex":
          return await this.compiler.compileStructuralTag({ type: "regex", pattern: spec.text });
        case "ebnf":
          return await this.compiler.compileGrammar(trieLiteralAlternations(spec.text), "root");
        case "structural_tag":
          return await this.compiler.compileStructuralTag(
            (await this.boundedStructuralTag(JSON.parse(spec.text), spec.strict)) as Record<
              string,
              unknown
            >,
          );
      }
    } catch (err) {
      throw new GrammarCompileError(`cannot compile the ${spec.kind} grammar: ${errorText(err)}`);
    }
  }
}

/** Tokens a matcher can take back (speculative decoding's rejected drafts). */
export const MAX_ROLLBACK_TOKENS = 16;

/**
 * One sequence's position in its grammar. `nextTokenBitmask` gives the tokens allowed next
 * (bit `id & 31` of word `id >> 5`); `accept` advances by one sampled token; `rollback` undoes
 * the last accepted tokens (at most MAX_ROLLBACK_TOKENS), the hook for speculative decoding's
 * rejected drafts (ADR 0016). Not thread-safe; one per sequence.
 */
export class SequenceGrammar {
  constructor(
    private readonly matcher: XGrammarMatcher,
    readonly vocabSize: number,
  ) {}

  /** [ceil(vocabSize / 32)] allowed-token bitmask for the next token. */
  nextTokenBitmask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  /** Advances by `tokenId`; false (state unchanged) when the grammar does not allow it. */
  accept(tokenId: number): boolean {
    return this.matcher.acceptToken(tokenId);
  }

  rollback(numTokens: number): void {
    if (numTokens > 0) this.matcher.rollBack(numTokens);
  }

  /** The grammar is complete and the stop token was accepted. */
  get isTerminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "number") return `XGrammar error ${err}`;
  return String(err);
}
