/**
 * Works around an XGrammar 0.1.27 (WebAssembly build) matcher defect (ADR 0016): an
 * alternation of string literals in which one literal shares a prefix with another, such as
 * `"aaa" | "aaaa"` or a JSON Schema `enum` of `["b", "bogwp", "sjsm"]`, lets the matcher accept
 * strings outside the alternation. Rewriting every such alternation as a trie, where the
 * alternatives at each branch start with different bytes (`"a" "a" "a" ("a")?`), avoids it.
 */

/** One EBNF string literal in double quotes, escapes included. */
const LITERAL = String.raw`"(?:[^"\\]|\\.)*"`;
const NAME = "[A-Za-z_][A-Za-z0-9_]*";
/** One alternative: a literal or a rule name, optionally in parentheses. */
const ALTERNATIVE = String.raw`(?:\(\s*(?:${LITERAL}|${NAME})\s*\)|${LITERAL}|${NAME})`;
const ALTERNATION = new RegExp(String.raw`^${ALTERNATIVE}(?:\s*\|\s*${ALTERNATIVE})+$`);
const SINGLE_LITERAL = new RegExp(String.raw`^\(?\s*(${LITERAL})\s*\)?$`);

/**
 * `ebnf` with every rule whose whole body is an alternation of string literals (or of rules
 * that are one literal, such as a JSON Schema `anyOf` of `const`s) written as a trie.
 */
export function trieLiteralAlternations(ebnf: string): string {
  const lines = ebnf.split("\n");
  const nameToLiteral = new Map<string, string>();
  for (const line of lines) {
    const at = line.indexOf("::=");
    if (at < 0) continue;
    const literal = SINGLE_LITERAL.exec(line.slice(at + 3).trim());
    if (literal) nameToLiteral.set(line.slice(0, at).trim(), literal[1]!);
  }
  return lines
    .map((line) => {
      const at = line.indexOf("::=");
      if (at < 0) return line;
      // Only a rule whose whole body is the alternation: a partial match could split a sequence.
      const body = line.slice(at + 3).trim();
      if (!ALTERNATION.test(body)) return line;
      const literals: string[][] = [];
      for (const m of body.matchAll(new RegExp(`${LITERAL}|${NAME}`, "g"))) {
        const literal = m[0].startsWith('"') ? m[0] : nameToLiteral.get(m[0]);
        if (literal === undefined) return line;
        literals.push(decode(literal));
      }
      return `${line.slice(0, at + 3)} ${trieOf(literals)}`;
    })
    .join("\n");
}

/** A literal's characters (escape sequences kept whole, so they are re-emitted unchanged). */
function decode(literal: string): string[] {
  const inner = literal.slice(1, -1);
  const chars: string[] = [];
  for (let i = 0; i < inner.length; i++) {
    if (inner[i] === "\\") {
      const next = inner[i + 1];
      if (next === "x") {
        chars.push(inner.slice(i, i + 4));
        i += 3;
      } else if (next === "u") {
        chars.push(inner.slice(i, i + 6));
        i += 5;
      } else {
        chars.push(inner.slice(i, i + 2));
        i += 1;
      }
    } else {
      chars.push(inner[i]!);
    }
  }
  return chars;
}

function trieOf(words: readonly string[][]): string {
  const unique = [...new Map(words.map((w) => [w.join("\u0000"), w])).values()];
  return expr(unique, 0) || '""';
}

/** The alternatives (as character lists) from position `at` on. */
function expr(words: readonly string[][], at: number): string {
  const isEnd = words.some((w) => w.length === at);
  const firstToRest = new Map<string, string[][]>();
  for (const w of words) {
    if (w.length === at) continue;
    const first = w[at]!;
    const group = firstToRest.get(first) ?? [];
    group.push(w);
    firstToRest.set(first, group);
  }
  const branches = [...firstToRest].map(([first, group]) => {
    const rest = expr(group, at + 1);
    return rest === "" ? `"${first}"` : `"${first}" ${rest}`;
  });
  if (branches.length === 0) return "";
  const alternation = branches.length === 1 ? branches[0]! : `(${branches.join(" | ")})`;
  return isEnd ? `(${alternation})?` : alternation;
}
