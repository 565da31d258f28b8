import { readFileSync } from "node:fs";
import { ALLOWED, type Guard, type GuardVerdict } from "./guard";

/**
 * The built-in rules guard: deny patterns, one JavaScript regular expression per line of the
 * rules file (case-insensitive; blank lines and lines starting with # are ignored). Any match
 * in the input, or in an output so far, blocks it.
 */
export class RulesGuard implements Guard {
  private constructor(private readonly patterns: readonly RegExp[]) {}

  /** Throws naming the file and line of a pattern that does not compile. */
  static fromFile(path: string): RulesGuard {
    return RulesGuard.parse(readFileSync(path, "utf8"), path);
  }

  static parse(text: string, source = "rules"): RulesGuard {
    const patterns: RegExp[] = [];
    text.split("\n").forEach((raw, i) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      try {
        patterns.push(new RegExp(line, "iu"));
      } catch (err) {
        throw new Error(`${source}:${i + 1}: invalid pattern: ${(err as Error).message}`);
      }
    });
    return new RulesGuard(patterns);
  }

  private check(text: string): GuardVerdict {
    const hit = this.patterns.find((p) => p.test(text));
    return hit ? { isBlocked: true, reason: `rule /${hit.source}/` } : ALLOWED;
  }

  async checkInput(messages: readonly { content: string }[]): Promise<GuardVerdict> {
    for (const m of messages) {
      const verdict = this.check(m.content);
      if (verdict.isBlocked) return verdict;
    }
    return ALLOWED;
  }

  async checkOutput(_messages: unknown, output: string): Promise<GuardVerdict> {
    return this.check(output);
  }
}
