import { STORIES_DIR } from "@kiln/test-support";
import { it } from "vitest";
import { GrammarEngine } from "./grammar-engine";
import { loadGrammarVocab } from "./grammar-vocab";

it("replay", async () => {
  const v = await loadGrammarVocab(STORIES_DIR, 512, [2]);
  const schema = {
    type: "object",
    properties: {
      city: { type: "string", maxLength: 8 },
      days: { type: "integer", minimum: 1, maximum: 7 },
    },
    required: ["city", "days"],
    additionalProperties: false,
  };
  const tag = {
    type: "structural_tag",
    format: {
      type: "tags_with_separator",
      tags: [
        {
          type: "tag",
          begin: '<tool_call>\n{"name": "weather", "arguments": ',
          content: { type: "json_schema", json_schema: schema },
          end: "}\n</tool_call>",
        },
      ],
      separator: "\n",
      at_least_one: true,
      stop_after_first: false,
    },
  };
  const toks = [
    "<",
    "t",
    "oo",
    "l",
    "_",
    "c",
    "a",
    "l",
    "l",
    ">",
    "\n",
    "{",
    '"',
    "n",
    "a",
    "m",
    "e",
    '"',
    ":",
    ' "',
    "w",
    "e",
    "a",
    "t",
    "h",
    "e",
    "r",
    '"',
    ",",
    " ",
    '"',
    "a",
    "r",
    "g",
    "u",
    "m",
    "ent",
    "s",
    '"',
    ":",
    " ",
    "{",
    " ",
    "\n",
    '"',
    "c",
    "i",
    "t",
    "y",
    '"',
    " ",
    "\n",
    ":",
    ' "',
    "O",
    "n",
    "e",
    ",",
    " p",
    "oo",
    "p",
    " c",
    "l",
    '"',
  ];
  const idOf = (t: string) => {
    const s = t.replaceAll(" ", "▁");
    let id = v.encodedVocab.indexOf(s);
    if (id < 0 && t.length === 1)
      id = v.encodedVocab.indexOf(
        `<0x${t.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}>`,
      );
    return id;
  };
  for (const [strict, ws] of [
    [true, 2],
    [false, 2],
    [true, 1],
    [true, 3],
  ] as const) {
    const e = await GrammarEngine.create(v, { maxWhitespace: ws, cacheSize: 4 });
    const spec = { kind: "structural_tag" as const, strict, text: JSON.stringify(tag) };
    const g = await e.createMatcher(spec);
    const res: string[] = [];
    const ids = [
      504, 413, 347, 421, 98, 429, 412, 421, 421, 505, 13, 126, 436, 416, 412, 423, 411, 436, 467,
      313, 424, 411, 412, 413, 415, 411, 420, 436, 432, 410, 436, 412, 420, 428, 425, 423, 377, 419,
      436, 467, 410, 126, 410, 13, 436, 429, 417, 413, 422, 436, 410, 13, 467, 313, 441, 416, 411,
      432, 282, 347, 427, 280, 421, 436,
    ];
    for (const id of ids) {
      const t = v.encodedVocab[id];
      const mask = await g.nextTokenBitmask();
      const allowed = ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
      res.push(`${JSON.stringify(t)}:${id}:mask=${allowed}:${g.accept(id)}`);
    }
    console.log(strict, ws, res.slice(58, 62).join(" "));
  }
});
