/**
 * Makes masks inside length-bounded JSON strings cheap (ADR 0016). XGrammar writes a string
 * with `maxLength` as a bounded repetition of a character class followed by the closing quote,
 * `"\"" [^"\\\r\n]{0,10} "\""`. Its matcher finds most of the vocabulary context-dependent at
 * every position inside such a repetition (the repetition may end there, and what follows lies
 * outside the rule), so one mask on a 32,000-token vocabulary costs 2–4 ms there, against
 * 0.02–0.1 ms elsewhere. Rewritten as a chain of rules that each end with the closing quote,
 *
 *     "\"" C C kiln_bounded_0_8        (minLength 2, maxLength 10)
 *     kiln_bounded_0_8 ::= "\"" | C kiln_bounded_0_7
 *     …
 *     kiln_bounded_0_0 ::= "\""
 *
 * the same strings are accepted and every token's fate is decided inside the chain: masks there
 * cost about as much as anywhere else (docs/benchmarks.md, "Structured output").
 */

/** A character class, a bounded repetition of it, then the closing-quote literal. */
const BOUNDED = /(\[(?:\\.|[^\]\\])*\])\{(\d+),(\d+)\}\s*"\\""/g;

/** Longest optional run written as a chain; longer ones stay as XGrammar wrote them. */
export const MAX_CHAIN_LENGTH = 256;

/** `ebnf` with every bounded character-class repetition before a closing quote as a chain. */
export function chainBoundedStrings(ebnf: string): string {
  const classToIndex = new Map<string, number>();
  /** Chains already written: `${class index}_${length}`. */
  const written = new Set<string>();
  const rules: string[] = [];
  const chain = (index: number, charClass: string, length: number): string => {
    for (let k = 0; k <= length; k++) {
      const name = `kiln_bounded_${index}_${k}`;
      if (written.has(name)) continue;
      written.add(name);
      rules.push(
        k === 0
          ? `${name} ::= "\\""`
          : `${name} ::= "\\"" | ${charClass} kiln_bounded_${index}_${k - 1}`,
      );
    }
    return `kiln_bounded_${index}_${length}`;
  };
  const rewritten = ebnf.replace(BOUNDED, (whole, charClass: string, min: string, max: string) => {
    const lo = Number(min);
    const hi = Number(max);
    if (hi < lo || hi - lo > MAX_CHAIN_LENGTH) return whole;
    let index = classToIndex.get(charClass);
    if (index === undefined) {
      index = classToIndex.size;
      classToIndex.set(charClass, index);
    }
    return [...Array<string>(lo).fill(charClass), chain(index, charClass, hi - lo)].join(" ");
  });
  return rules.length === 0 ? rewritten : `${rewritten}\n${rules.join("\n")}`;
}
