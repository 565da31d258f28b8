import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LLAMA2_TOKENIZER_DIR, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChatMessage,
  ChatTemplateError,
  createChatTemplate,
  loadChatTemplate,
  loadTokenizer,
  type Tokenizer,
} from "../src/tokenizer";

const STORIES = STORIES_DIR;
const LLAMA2 = LLAMA2_TOKENIZER_DIR;

let stories: Tokenizer;
let llama2: Tokenizer;
const tmpDirs: string[] = [];

beforeAll(async () => {
  [stories, llama2] = await Promise.all([loadTokenizer(STORIES), loadTokenizer(LLAMA2)]);
});

afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A model directory with stories260K's tokenizer.json and the given files. */
async function modelDir(files: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-chat-"));
  tmpDirs.push(dir);
  await copyFile(join(STORIES, "tokenizer.json"), join(dir, "tokenizer.json"));
  for (const [name, content] of Object.entries(files)) {
    const text = typeof content === "string" ? content : JSON.stringify(content);
    await writeFile(join(dir, name), text);
  }
  return dir;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ChatTemplateError);
    return (err as ChatTemplateError).code;
  }
  throw new Error("expected a ChatTemplateError");
}

const conversation: ChatMessage[] = [
  { role: "system", content: "You are kind." },
  { role: "user", content: "Hi!" },
  { role: "assistant", content: "Hello." },
  { role: "user", content: "Tell me a story." },
];

describe("stories260K chat template", () => {
  it("renders every role and the generation prompt", () => {
    const text = stories.renderChat(conversation, { addGenerationPrompt: true });
    expect(text).toBe(
      "You are kind.\n\nUser: Hi!\nAssistant: Hello.</s>\nUser: Tell me a story.\nAssistant:",
    );
    expect(stories.renderChat(conversation.slice(1, 2))).toBe("User: Hi!\n");
  });

  it("gets one BOS from encodeChat, since the template writes none", async () => {
    const text = stories.renderChat(conversation.slice(1, 2), { addGenerationPrompt: true });
    const ids = await stories.encodeChat(text);
    expect(ids.slice(0, 2)).not.toEqual([1, 1]);
    expect(ids[0]).toBe(1);
    expect(ids).toEqual(await stories.encode(text));
  });
});

describe("Llama-2 chat template", () => {
  it("renders system, user and assistant turns as transformers does", () => {
    expect(llama2.renderChat(conversation)).toBe(
      "<s>[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\nHi! [/INST] Hello. </s>" +
        "<s>[INST] Tell me a story. [/INST]",
    );
  });

  it("is not given a second BOS by encodeChat", async () => {
    const text = llama2.renderChat(conversation);
    const ids = await llama2.encodeChat(text);
    expect(ids.slice(0, 5)).toEqual([1, 518, 25580, 29962, 3532]);
    expect(ids.filter((id) => id === 1)).toHaveLength(2);
    expect(ids.at(-1)).not.toBe(2);
    // Plain encode follows add_bos_token and doubles it: the reason encodeChat exists.
    expect((await llama2.encode(text)).slice(0, 2)).toEqual([1, 1]);
  });

  it("turns raise_exception into CHAT_TEMPLATE_REJECTED with the template's message", () => {
    const twoUsers = [
      { role: "user", content: "a" },
      { role: "user", content: "b" },
    ];
    expect(() => llama2.renderChat(twoUsers)).toThrow(/Conversation roles must alternate/);
    expect(codeOf(() => llama2.renderChat(twoUsers))).toBe("CHAT_TEMPLATE_REJECTED");
  });
});

describe("template selection and errors", () => {
  const tokens = { bosToken: "<s>", eosToken: "</s>" };
  const named = (entries: Record<string, string>) =>
    createChatTemplate(new Map(Object.entries(entries)), tokens);

  it("is NO_CHAT_TEMPLATE for a model without one", async () => {
    const dir = await modelDir({ "tokenizer_config.json": { bos_token: "<s>" } });
    expect(await loadChatTemplate(dir)).toBeNull();
    const tok = await loadTokenizer(dir);
    expect(tok.chatTemplate).toBeNull();
    expect(codeOf(() => tok.renderChat(conversation))).toBe("NO_CHAT_TEMPLATE");
  });

  it("picks default, tool_use for tools, or the named template", () => {
    const template = named({
      default: "D{{ messages | length }}",
      tool_use: "T{{ tools[0].name }}",
      terse: "X",
    });
    expect(template?.names).toEqual(["default", "tool_use", "terse"]);
    expect(template?.render(conversation)).toBe("D4");
    expect(template?.render(conversation, { tools: [{ name: "search" }] })).toBe("Tsearch");
    expect(template?.render(conversation, { tools: [] })).toBe("D4");
    expect(template?.render(conversation, { templateName: "terse" })).toBe("X");
    expect(codeOf(() => template?.render(conversation, { templateName: "nope" }))).toBe(
      "NO_CHAT_TEMPLATE",
    );
  });

  it("is NO_CHAT_TEMPLATE with several templates and no default", () => {
    const template = named({ a: "A", b: "B" });
    expect(codeOf(() => template?.render(conversation))).toBe("NO_CHAT_TEMPLATE");
    expect(template?.render(conversation, { templateName: "b" })).toBe("B");
  });

  it("passes special tokens, tools, extra variables and the generation flag", () => {
    const template = named({
      default:
        "{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}|{{ tools is none }}|" +
        "{{ add_generation_prompt }}|{{ enable_thinking }}",
    });
    const text = template?.render(conversation, {
      addGenerationPrompt: true,
      extra: { enable_thinking: false, bos_token: "ignored" },
    });
    expect(text).toBe("<s>|</s>|false|true|true|false");
  });

  it("is CHAT_TEMPLATE_FAILED for a template that does not parse or render", () => {
    expect(codeOf(() => named({ default: "{% for %}" })?.render(conversation))).toBe(
      "CHAT_TEMPLATE_FAILED",
    );
    expect(codeOf(() => named({ default: "{{ messages | nofilter }}" })?.render([]))).toBe(
      "CHAT_TEMPLATE_FAILED",
    );
  });

  it("reads a list of named templates from tokenizer_config.json", async () => {
    const dir = await modelDir({
      "tokenizer_config.json": {
        chat_template: [
          { name: "default", template: "plain" },
          { name: "tool_use", template: "tools" },
        ],
      },
    });
    const template = await loadChatTemplate(dir);
    expect(template?.render([], { tools: [{}] })).toBe("tools");
  });

  it("prefers chat_template.jinja over tokenizer_config.json", async () => {
    const dir = await modelDir({
      "tokenizer_config.json": { chat_template: "from config" },
      "chat_template.jinja": "from jinja {{ messages[0].content }}",
    });
    expect((await loadChatTemplate(dir))?.render([{ role: "user", content: "x" }])).toBe(
      "from jinja x",
    );
  });
});
