import { expect, it } from "vitest";
import { storiesGrammarCompiler } from "../../tests/helpers/stories-grammar";
import { trieLiteralAlternations } from "./literal-trie";

it("writes a literal alternation as a trie", () => {
  expect(trieLiteralAlternations('root ::= ("\\"bogwp\\"") | ("\\"sjsm\\"") | ("\\"b\\"")')).toBe(
    'root ::= "\\"" ("b" ("o" "g" "w" "p" "\\"" | "\\"") | "s" "j" "s" "m" "\\"")',
  );
  expect(trieLiteralAlternations('a ::= "x"\nroot ::= a | "xy"')).toBe(
    'a ::= "x"\nroot ::= "x" ("y")?',
  );
  expect(trieLiteralAlternations('root ::= "x" "y" | "z"')).toBe('root ::= "x" "y" | "z"');
});

it("the rewritten grammars of string enums and const anyOfs accept exactly their values", async () => {
  const { xg, compiler: comp } = await storiesGrammarCompiler();
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const word = () => Array.from({ length: 1 + rnd(5) }, () => 'ab"s'[rnd(4)]).join("");
  const mismatches: string[] = [];
  for (let t = 0; t < 120; t++) {
    const values = [...new Set(Array.from({ length: 1 + rnd(4) }, word))];
    const ebnf = await xg.Testings._jsonSchemaToEBNF(
      JSON.stringify({
        type: "object",
        properties: { k: t % 2 ? { enum: values } : { anyOf: values.map((c) => ({ const: c })) } },
        required: ["k"],
      }),
      true,
      undefined,
      undefined,
      true,
      1,
    );
    const fixed = trieLiteralAlternations(ebnf);
    const probes = [...values, ...Array.from({ length: 12 }, word)];
    const cg = await comp.compileGrammar(fixed, "root");
    for (const p of probes) {
      const m = await xg.GrammarMatcher.createGrammarMatcher(cg);
      const ok = m._acceptString(`{"k":${JSON.stringify(p)}}`) && m.acceptToken(2);
      if (ok !== values.includes(p)) mismatches.push(`${JSON.stringify(values)}: ${p} ${ok}`);
      m.dispose();
    }
  }
  expect(mismatches).toEqual([]);
});
