import fc from "fast-check";
import { beforeAll, expect, it } from "vitest";
import { storiesGrammarCompiler } from "../../tests/helpers/stories-grammar";
import { chainBoundedStrings, MAX_CHAIN_LENGTH } from "./bounded-strings";

let xg: Awaited<ReturnType<typeof storiesGrammarCompiler>>["xg"];
let compiler: Awaited<ReturnType<typeof storiesGrammarCompiler>>["compiler"];

beforeAll(async () => {
  ({ xg, compiler } = await storiesGrammarCompiler());
});

it("writes a bounded repetition before a closing quote as a chain of rules ending in the quote", () => {
  expect(chainBoundedStrings('root ::= "\\"" [a-c]{1,3} "\\""')).toBe(
    [
      'root ::= "\\"" [a-c] kiln_bounded_0_2',
      'kiln_bounded_0_0 ::= "\\""',
      'kiln_bounded_0_1 ::= "\\"" | [a-c] kiln_bounded_0_0',
      'kiln_bounded_0_2 ::= "\\"" | [a-c] kiln_bounded_0_1',
    ].join("\n"),
  );
  // Unbounded, not before a quote, or too long: left as written.
  for (const ebnf of [
    'root ::= "\\"" [a-c]{2,} "\\""',
    'root ::= [0-9]{1,3} ","',
    `root ::= "\\"" [a]{0,${MAX_CHAIN_LENGTH + 1}} "\\""`,
  ]) {
    expect(chainBoundedStrings(ebnf)).toBe(ebnf);
  }
});

/** Whether the compiled EBNF accepts `text` followed by the stop token. */
async function accepts(compiled: unknown, text: string): Promise<boolean> {
  const m = await xg.GrammarMatcher.createGrammarMatcher(compiled as never);
  const ok = m._acceptString(text) && m.acceptToken(2);
  m.dispose();
  return ok;
}

it("the chained grammars of bounded strings accept exactly what XGrammar's own accept", async () => {
  const schemaArb = fc
    .tuple(
      fc.integer({ min: 0, max: 4 }),
      fc.integer({ min: 0, max: 5 }),
      fc.constantFrom(undefined, "^[a-c]{1,4}$", "^x[0-9]{0,2}$"),
    )
    .map(([min, span, pattern]) => ({
      type: "object",
      properties: {
        s: pattern
          ? { type: "string", pattern }
          : { type: "string", minLength: min, maxLength: min + span },
        l: { type: "array", items: { type: "string", maxLength: 2 }, maxItems: 3 },
      },
      required: ["s", "l"],
      additionalProperties: false,
    }));
  const piece = fc.oneof(
    fc.stringMatching(/^[a-c]{0,6}$/),
    fc.stringMatching(/^x[0-9]{0,3}$/),
    fc.stringMatching(/^[abcx09" ]{0,7}$/),
  );
  const probeArb = fc
    .tuple(piece, fc.array(fc.stringMatching(/^[ab]{0,3}$/), { maxLength: 4 }))
    .map(([s, l]) => `{"s":${JSON.stringify(s)},"l":${JSON.stringify(l)}}`);
  const mismatches: string[] = [];
  const verdicts = { accepted: 0, refused: 0 };
  await fc.assert(
    fc.asyncProperty(
      schemaArb,
      fc.array(probeArb, { minLength: 8, maxLength: 8 }),
      async (schema, probes) => {
        const ebnf = await xg.Testings._jsonSchemaToEBNF(
          JSON.stringify(schema),
          true,
          undefined,
          undefined,
          true,
          1,
        );
        const chained = chainBoundedStrings(ebnf);
        expect(chained).not.toBe(ebnf);
        const [original, rewritten] = await Promise.all([
          compiler.compileGrammar(ebnf, "root"),
          compiler.compileGrammar(chained, "root"),
        ]);
        for (const probe of probes) {
          const [want, got] = [await accepts(original, probe), await accepts(rewritten, probe)];
          if (want !== got)
            mismatches.push(`${JSON.stringify(schema)} ${probe}: ${want} vs ${got}`);
          verdicts[want ? "accepted" : "refused"]++;
        }
        original.dispose();
        rewritten.dispose();
      },
    ),
    { numRuns: 60, seed: 16 },
  );
  expect(mismatches).toEqual([]);
  // The probes land on both sides of every bound.
  expect(Math.min(verdicts.accepted, verdicts.refused)).toBeGreaterThan(50);
});
