import { STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GrammarVocab } from "./grammar-engine";
import { GrammarHosts } from "./grammar-hosts";
import type { GrammarSpec } from "./grammar-spec";
import { loadGrammarVocab } from "./grammar-vocab";

const REGEX: GrammarSpec = { kind: "regex", text: "abc", strict: true };
let vocab: GrammarVocab;
const pools: GrammarHosts[] = [];

beforeAll(async () => {
  vocab = await loadGrammarVocab(STORIES_DIR, 512, [2]);
});
afterAll(async () => {
  await Promise.all(pools.map((pool) => pool.dispose()));
});

async function pool(maxThreads: number): Promise<GrammarHosts> {
  const hosts = await GrammarHosts.create(vocab, { maxWhitespace: 1, cacheSize: 8, maxThreads });
  pools.push(hosts);
  return hosts;
}

const id = (piece: string) => vocab.encodedVocab.indexOf(piece);
const isAllowed = (mask: Int32Array, token: number) =>
  ((mask[token >> 5]! >>> (token & 31)) & 1) === 1;

async function maskOf(hosts: GrammarHosts, seqId: number): Promise<Int32Array> {
  const words = new Int32Array(new SharedArrayBuffer(4 * 16));
  await hosts.fillMasks([{ seqId, words }]);
  return words;
}

/** A schema of `numFields` bounded strings: about half a second to compile on 512 tokens. */
function slowSchema(numFields: number, salt: string): GrammarSpec {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < numFields; i++) {
    properties[`${salt}_${i}`] = { type: "string", maxLength: 10 + (i % 7) };
  }
  const schema = { type: "object", properties, required: Object.keys(properties) };
  return { kind: "json_schema", text: JSON.stringify(schema), strict: true };
}

describe("GrammarHosts", () => {
  it("masks on the host thread follow the accepted tokens; replays and refusals", async () => {
    const hosts = await pool(1);
    expect(await hosts.open(1, REGEX, [])).toBeNull();
    let mask = await maskOf(hosts, 1);
    expect(isAllowed(mask, id("a"))).toBe(true);
    expect(isAllowed(mask, id("b"))).toBe(false);
    hosts.accept(1, id("a"));
    mask = await maskOf(hosts, 1);
    expect(isAllowed(mask, id("b"))).toBe(true);
    expect(isAllowed(mask, id("a"))).toBe(false);
    // A resumed sequence replays its output; one the grammar refuses is an error.
    expect(await hosts.open(2, REGEX, [id("a"), id("b")])).toBeNull();
    expect(isAllowed(await maskOf(hosts, 2), id("c"))).toBe(true);
    expect(await hosts.open(3, REGEX, [id("b")])).toMatch(/does not match/);
    expect(hosts.has(3)).toBe(false);
    // Complete: every token allowed.
    hosts.accept(2, id("c"));
    hosts.accept(2, 2);
    expect([...(await maskOf(hosts, 2))].every((w) => w === -1)).toBe(true);
    await expect(maskOf(hosts, 99)).rejects.toThrow(/no grammar/);
  });

  it("compiles once per spec, and reports what XGrammar refuses", async () => {
    const hosts = await pool(2);
    expect(await hosts.prepare(REGEX)).toBeNull();
    expect(await hosts.prepare(REGEX)).toBeNull();
    expect(hosts.compileCount).toBe(1);
    expect(hosts.isCached(REGEX)).toBe(true);
    const bad: GrammarSpec = { kind: "ebnf", text: "root ::= (", strict: true };
    expect(await hosts.prepare(bad)).toMatch(/cannot compile the ebnf grammar/);
    expect(await hosts.open(7, bad, [])).toMatch(/cannot compile/);
    expect(hosts.isCached(bad)).toBe(false);
  });

  it("a new grammar compiles on another thread than running sequences: their masks never wait", async () => {
    const hosts = await pool(2);
    expect(await hosts.open(1, REGEX, [])).toBeNull();
    expect(hosts.numThreads).toBe(1);
    const order: string[] = [];
    const compiling = hosts.prepare(slowSchema(500, "a")).then((error) => {
      order.push("compiled");
      return error;
    });
    // Masks asked while the compile runs (the second thread starts for it).
    await new Promise((resolve) => setTimeout(resolve, 150));
    for (let i = 0; i < 5; i++) {
      await maskOf(hosts, 1);
      order.push("mask");
    }
    expect(await compiling).toBeNull();
    expect(hosts.numThreads).toBe(2);
    expect(order).toEqual(["mask", "mask", "mask", "mask", "mask", "compiled"]);
    // The new grammar's sequences live where it was compiled.
    expect(await hosts.open(2, slowSchema(500, "a"), [])).toBeNull();
    const mask = await maskOf(hosts, 2);
    expect(mask.some((w) => w !== 0) && mask.some((w) => w !== -1)).toBe(true);
    expect(hosts.compileCount).toBe(2);
  });

  it("drops sequences and frees their host for the next compile", async () => {
    const hosts = await pool(1);
    expect(await hosts.open(1, REGEX, [])).toBeNull();
    expect(await hosts.open(2, REGEX, [])).toBeNull();
    hosts.drop(1);
    expect(hosts.has(1)).toBe(false);
    expect(hosts.numSequences).toBe(1);
    hosts.dropAll();
    expect(hosts.numSequences).toBe(0);
    await expect(maskOf(hosts, 2)).rejects.toThrow(/no grammar/);
  });
});
