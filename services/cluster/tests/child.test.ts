import { describe, expect, it } from "vitest";
import { Child } from "../src/child";

/** A Child running `script` with plain node. */
function nodeChild(script: string, lines: string[]): Child {
  return new Child(
    { name: "fake", command: process.execPath, args: ["-e", script], cwd: process.cwd() },
    (line) => lines.push(line),
  );
}

describe("Child", () => {
  it("resolves the listening event and prefixes every line", async () => {
    const lines: string[] = [];
    const child = nodeChild(
      `console.error("warming up"); console.log(JSON.stringify({ event: "listening", port: 42 }));`,
      lines,
    );
    expect(await child.waitForEvent("listening", 5000)).toEqual({ event: "listening", port: 42 });
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(lines).toContain("[fake] warming up");
    expect(lines).toContain('[fake] {"event":"listening","port":42}');
  });

  it("rejects when the process exits before the event", async () => {
    const child = nodeChild("process.exit(3)", []);
    await expect(child.waitForEvent("listening", 5000)).rejects.toThrow(/exited.*code 3/);
  });

  it("kills a process that ignores SIGTERM after the grace period", async () => {
    const lines: string[] = [];
    const child = nodeChild(
      `process.on("SIGTERM", () => {}); console.log('{"event":"listening"}'); setInterval(() => {}, 1000);`,
      lines,
    );
    await child.waitForEvent("listening", 5000);
    expect(await child.stop("SIGTERM", 300)).toEqual({ code: null, signal: "SIGKILL" });
    expect(lines.some((l) => l.includes("killing it"))).toBe(true);
  });
});
