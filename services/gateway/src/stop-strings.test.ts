import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopMatcher } from "./stop-strings";

function run(stops: string[], pieces: string[]): { text: string; isStopped: boolean } {
  const m = new StopMatcher(stops);
  let text = "";
  for (const p of pieces) {
    const r = m.push(p);
    text += r.text;
    if (r.isStopped) return { text, isStopped: true };
  }
  return { text: text + m.flush(), isStopped: false };
}

describe("StopMatcher", () => {
  it("passes text through without stop strings", () => {
    expect(run([], ["a", "b"])).toEqual({ text: "ab", isStopped: false });
  });

  it("finds a stop string split across pieces and drops it", () => {
    expect(run(["STOP"], ["hello S", "TO", "P world"])).toEqual({
      text: "hello ",
      isStopped: true,
    });
  });

  it("holds back a possible prefix, then releases it", () => {
    const m = new StopMatcher(["abc"]);
    expect(m.push("xa")).toEqual({ text: "x", isStopped: false });
    expect(m.push("b")).toEqual({ text: "", isStopped: false });
    expect(m.push("d")).toEqual({ text: "abd", isStopped: false });
    expect(m.flush()).toBe("");
  });

  it("flushes a held prefix at the end", () => {
    expect(run(["abc"], ["xab"])).toEqual({ text: "xab", isStopped: false });
  });

  it("picks the earliest of several stop strings", () => {
    expect(run(["world", "lo"], ["hello world"])).toEqual({ text: "hel", isStopped: true });
  });

  it("emits nothing after stopping", () => {
    const m = new StopMatcher(["."]);
    expect(m.push("a.b")).toEqual({ text: "a", isStopped: true });
    expect(m.push("c")).toEqual({ text: "", isStopped: true });
    expect(m.flush()).toBe("");
  });

  const alphabet = fc.constantFrom("a", "b", "c", "\n");
  const str = (min: number) => fc.string({ unit: alphabet, minLength: min, maxLength: 12 });
  const stopsArb = fc.array(str(1), { minLength: 1, maxLength: 3 });

  it("stops where a stop string first ends, fed one character at a time", () => {
    fc.assert(
      fc.property(str(0), stopsArb, (text, stops) => {
        let expected = { text, isStopped: false };
        for (let end = 1; end <= text.length && !expected.isStopped; end++) {
          const starts = stops
            .filter((s) => text.slice(0, end).endsWith(s))
            .map((s) => end - s.length);
          if (starts.length > 0)
            expected = { text: text.slice(0, Math.min(...starts)), isStopped: true };
        }
        expect(run(stops, [...text])).toEqual(expected);
      }),
    );
  });

  it("for any split, emits a prefix that a stop string follows, or everything", () => {
    fc.assert(
      fc.property(str(0), stopsArb, fc.array(fc.nat(), { maxLength: 5 }), (text, stops, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const pieces: string[] = [];
        let prev = 0;
        for (const p of [...points, text.length]) {
          pieces.push(text.slice(prev, p));
          prev = p;
        }
        const out = run(stops, pieces);
        const hasStop = stops.some((s) => text.includes(s));
        expect(out.isStopped).toBe(hasStop);
        if (!hasStop) expect(out.text).toBe(text);
        else expect(stops.some((s) => text.startsWith(out.text + s))).toBe(true);
      }),
    );
  });
});
