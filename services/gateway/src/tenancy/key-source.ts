import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { KeyTable } from "./keys-file";

export interface KeySourceOptions {
  /** KILN_API_KEYS_FILE: re-read when it changes (polled) and on SIGHUP. */
  readonly keysFile: string | null;
  /** KILN_API_KEYS: admin keys that always work alongside the file's. */
  readonly plainKeys: readonly string[] | null;
  /** How often the file's mtime is checked. Default 500 ms. */
  readonly pollMs?: number;
  /** Where reload outcomes are reported (one line each). */
  readonly log: (line: string) => void;
}

/**
 * The current key table: KILN_API_KEYS merged with the keys file. A file that fails to parse
 * keeps the previous table (and logs why); at startup it is an error, so a typo never opens or
 * closes the door silently. Owns a file watcher and a SIGHUP listener until `close()`.
 */
export class KeySource {
  private current: KeyTable | null;
  private readonly plain: KeyTable | null;
  private readonly onHup = () => this.reload("SIGHUP");
  private readonly onChange = () => this.reload("file changed");
  /** Bumped on every successful reload; tests wait on it. */
  generation = 0;

  /** Throws when the keys file cannot be read or parsed at startup. */
  constructor(private readonly opts: KeySourceOptions) {
    this.plain = opts.plainKeys ? KeyTable.fromPlainKeys(opts.plainKeys) : null;
    this.current = opts.keysFile ? this.read(opts.keysFile) : this.plain;
    if (opts.keysFile) {
      watchFile(opts.keysFile, { interval: opts.pollMs ?? 500, persistent: false }, this.onChange);
      process.on("SIGHUP", this.onHup);
    }
  }

  /** The table to check keys against, or null when authentication is off. */
  get table(): KeyTable | null {
    return this.current;
  }

  /** Re-reads the file; on failure keeps the previous table. Returns whether it changed. */
  reload(why: string): boolean {
    const path = this.opts.keysFile;
    if (!path) return false;
    try {
      this.current = this.read(path);
      this.generation++;
      this.opts.log(`keys file reloaded (${why}): ${this.current.numKeys} key(s)`);
      return true;
    } catch (err) {
      this.opts.log(
        `keys file ${path} rejected (${why}), keeping the previous keys: ${String(err)}`,
      );
      return false;
    }
  }

  close(): void {
    if (!this.opts.keysFile) return;
    unwatchFile(this.opts.keysFile, this.onChange);
    process.off("SIGHUP", this.onHup);
  }

  private read(path: string): KeyTable {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new Error(`cannot read ${path}: ${(err as Error).message}`);
    }
    const table = KeyTable.parse(text);
    return this.plain ? table.merge(this.plain) : table;
  }
}
