// Streams a chat completion from a running Kiln (`npm start`) with the official openai client.
// Run from the repository root: node examples/stream-chat.mjs
import OpenAI from "openai";

const client = new OpenAI({ baseURL: "http://127.0.0.1:8000/v1", apiKey: "unused" });
const stream = await client.chat.completions.create({
  model: "stories260K",
  messages: [{ role: "user", content: "Tell me a story" }],
  max_tokens: 64,
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
process.stdout.write("\n");
