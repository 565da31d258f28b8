import { createReadStream } from "node:fs";
import { StringDecoder } from "node:string_decoder";

/**
 * The lines of a file, streamed (one read chunk plus one partial line in memory). Written
 * out rather than using readline's async iterator, which can stall when the consumer awaits
 * slow work between lines while the stream ends.
 */
export async function* readLines(path: string): AsyncGenerator<string> {
  const decoder = new StringDecoder("utf8");
  let rest = "";
  for await (const chunk of createReadStream(path, { highWaterMark: 64 * 1024 })) {
    const text = rest + decoder.write(chunk as Buffer);
    const parts = text.split("\n");
    rest = parts.pop() ?? "";
    for (const line of parts) yield line.endsWith("\r") ? line.slice(0, -1) : line;
  }
  rest += decoder.end();
  if (rest !== "") yield rest;
}
