import type { Worker } from "node:worker_threads";
import { awaitThreadReady, startEntryThread } from "../thread-entry";
import type { GrammarEngineOptions, GrammarVocab } from "./grammar-engine";
import type {
  GrammarHostInit,
  GrammarHostReply,
  GrammarHostRequest,
  MaskJob,
} from "./grammar-host-protocol";
import { type GrammarSpec, grammarKey } from "./grammar-spec";

export interface GrammarHostsOptions extends GrammarEngineOptions {
  /** Most grammar host threads (KILN_GRAMMAR_THREADS); one starts at once, more on demand. */
  readonly maxThreads: number;
}

export const DEFAULT_GRAMMAR_THREADS = 2;

type Pending = { resolve: (error: string | null) => void };

/** One host thread and what the pool knows about it. */
class GrammarHost {
  private nextId = 1;
  private readonly idToPending = new Map<number, Pending>();
  private deathReason: string | null = null;
  /** Sequences whose matcher lives here. */
  readonly seqIds = new Set<number>();
  /** Compiles sent and not answered yet. */
  numCompiling = 0;

  constructor(readonly thread: Worker) {
    thread.on("message", (msg: GrammarHostReply) => {
      if (msg.type !== "done") return;
      const pending = this.idToPending.get(msg.id);
      this.idToPending.delete(msg.id);
      pending?.resolve(msg.error);
    });
    const die = (reason: string) => {
      this.deathReason ??= reason;
      for (const pending of this.idToPending.values()) pending.resolve(this.deathReason);
      this.idToPending.clear();
    };
    thread.on("error", (err) => die(`the grammar thread failed: ${err.message}`));
    thread.on("exit", (code) => die(`the grammar thread exited (${code})`));
  }

  /** Sends a request that is answered; resolves with its error message, null when it worked. */
  ask(msg: DistributiveOmit<GrammarHostRequest & { id: number }, "id">): Promise<string | null> {
    if (this.deathReason !== null) return Promise.resolve(this.deathReason);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.idToPending.set(id, { resolve });
      this.thread.postMessage({ ...msg, id });
    });
  }

  tell(msg: Extract<GrammarHostRequest, { type: "accept" | "drop" }>): void {
    if (this.deathReason === null) this.thread.postMessage(msg);
  }

  get isIdle(): boolean {
    return this.seqIds.size === 0 && this.numCompiling === 0;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

async function startHost(init: GrammarHostInit): Promise<GrammarHost> {
  const thread = startEntryThread(import.meta.url, "grammar-host-thread", init);
  thread.unref();
  await awaitThreadReady<GrammarHostReply, void>(thread, "the grammar thread", () => {});
  return new GrammarHost(thread);
}

/**
 * Structured output's grammar engine off the worker's event loop (ADR 0016): a pool of grammar
 * host threads, each with its own XGrammar instance. A compiled grammar cannot move between
 * instances, so every sequence's matcher lives on the host that compiled its grammar, and a
 * host's compile holds up the masks of its own sequences only. A new grammar is therefore
 * compiled on a host with no sequences and no compile running, a new host is started for it
 * while fewer than `maxThreads` run, and only then does it share the least busy host. Masks
 * are computed on the hosts, in parallel across hosts, each right after its sequence's
 * previous token is accepted.
 */
export class GrammarHosts {
  private readonly hosts: GrammarHost[] = [];
  private starting: Promise<GrammarHost> | null = null;
  /** Where each compiled (or compiling) grammar lives, least recently used first. */
  private readonly keyToHost = new Map<string, Promise<GrammarHost | string>>();
  private readonly seqIdToHost = new Map<number, GrammarHost>();
  private numCompiles = 0;

  private constructor(
    private readonly init: GrammarHostInit,
    private readonly maxThreads: number,
  ) {}

  /** Starts the first host (so a vocabulary XGrammar refuses fails here, at startup). */
  static async create(vocab: GrammarVocab, options: GrammarHostsOptions): Promise<GrammarHosts> {
    if (!Number.isInteger(options.maxThreads) || options.maxThreads < 1) {
      throw new RangeError(`grammar threads must be a positive integer, not ${options.maxThreads}`);
    }
    const { maxThreads, ...engineOptions } = options;
    const pool = new GrammarHosts({ vocab, options: engineOptions }, maxThreads);
    pool.hosts.push(await startHost(pool.init));
    return pool;
  }

  /** Grammars compiled so far (cache misses), for metrics and tests. */
  get compileCount(): number {
    return this.numCompiles;
  }

  get numThreads(): number {
    return this.hosts.length;
  }

  /** True when `spec` is compiled (or compiling) on some host. */
  isCached(spec: GrammarSpec): boolean {
    return this.keyToHost.has(grammarKey(spec));
  }

  /**
   * Compiles `spec` on a host (see the class comment for which), unless one holds it already.
   * Resolves with an error message when XGrammar refuses it, null when it is ready.
   */
  async prepare(spec: GrammarSpec): Promise<string | null> {
    return (await this.hostOf(spec)).error;
  }

  /**
   * A fresh matcher for `seqId` on the host holding `spec` (compiled there first when no host
   * holds it), with `replay` (tokens generated before a preemption) accepted. Resolves with an
   * error message when the grammar does not compile or refuses a replayed token.
   */
  async open(seqId: number, spec: GrammarSpec, replay: readonly number[]): Promise<string | null> {
    this.drop(seqId);
    const found = await this.hostOf(spec);
    if (found.error !== null) return found.error;
    const host = found.host;
    host.seqIds.add(seqId);
    this.seqIdToHost.set(seqId, host);
    const opened = await host.ask({ type: "open", seqId, spec, replay });
    if (opened !== null && this.seqIdToHost.get(seqId) === host) this.forget(seqId);
    return opened;
  }

  /** True when `seqId` has a matcher. */
  has(seqId: number): boolean {
    return this.seqIdToHost.has(seqId);
  }

  get numSequences(): number {
    return this.seqIdToHost.size;
  }

  /** Advances `seqId`'s matcher by its sampled token (no answer: messages stay in order). */
  accept(seqId: number, tokenId: number): void {
    this.seqIdToHost.get(seqId)?.tell({ type: "accept", seqId, tokenId });
  }

  drop(seqId: number): void {
    const host = this.seqIdToHost.get(seqId);
    if (!host) return;
    this.forget(seqId);
    host.tell({ type: "drop", seqIds: [seqId] });
  }

  dropAll(): void {
    for (const host of this.hosts) {
      if (host.seqIds.size > 0) host.tell({ type: "drop", seqIds: [...host.seqIds] });
      host.seqIds.clear();
    }
    this.seqIdToHost.clear();
  }

  /**
   * Writes each job's next-token mask into its words (every token allowed once the grammar is
   * complete). Rejects when a sequence has no matcher or a host fails.
   */
  async fillMasks(jobs: readonly MaskJob[]): Promise<void> {
    const hostToJobs = new Map<GrammarHost, MaskJob[]>();
    for (const job of jobs) {
      const host = this.seqIdToHost.get(job.seqId);
      if (!host) throw new Error(`sequence ${job.seqId} has no grammar`);
      const list = hostToJobs.get(host) ?? [];
      list.push(job);
      hostToJobs.set(host, list);
    }
    const errors = await Promise.all(
      [...hostToJobs].map(([host, list]) => host.ask({ type: "masks", jobs: list })),
    );
    const error = errors.find((e) => e !== null);
    if (error) throw new Error(error);
  }

  async dispose(): Promise<void> {
    const hosts = [...this.hosts, ...(this.starting ? [await this.starting] : [])];
    this.hosts.length = 0;
    await Promise.all(hosts.map((host) => host.thread.terminate()));
  }

  private forget(seqId: number): void {
    this.seqIdToHost.get(seqId)?.seqIds.delete(seqId);
    this.seqIdToHost.delete(seqId);
  }

  /**
   * The host holding `spec`, compiling it first on the best host when none does; the error
   * message instead when XGrammar refuses it (refusals are not cached).
   */
  private async hostOf(
    spec: GrammarSpec,
  ): Promise<{ host: GrammarHost; error: null } | { error: string }> {
    const key = grammarKey(spec);
    let compiled = this.keyToHost.get(key);
    if (compiled) {
      this.keyToHost.delete(key); // least recently used order: Map order is insertion order
    } else {
      this.numCompiles++;
      compiled = this.pickHost().then(async (host) => {
        host.numCompiling++;
        try {
          return (await host.ask({ type: "compile", spec })) ?? host;
        } finally {
          host.numCompiling--;
        }
      });
      const settled = compiled;
      void settled.then(
        (result) => {
          if (typeof result === "string" && this.keyToHost.get(key) === settled) {
            this.keyToHost.delete(key);
          }
        },
        () => this.keyToHost.delete(key),
      );
    }
    this.keyToHost.set(key, compiled);
    while (this.keyToHost.size > this.init.options.cacheSize) {
      this.keyToHost.delete(this.keyToHost.keys().next().value as string);
    }
    const result = await compiled;
    return typeof result === "string" ? { error: result } : { host: result, error: null };
  }

  /** An idle host; else a new one while fewer than maxThreads run; else the least busy. */
  private async pickHost(): Promise<GrammarHost> {
    const idle = this.hosts.find((host) => host.isIdle);
    if (idle) return idle;
    if (this.starting) return this.starting;
    if (this.hosts.length < this.maxThreads) {
      this.starting = startHost(this.init).then(
        (host) => {
          this.hosts.push(host);
          this.starting = null;
          return host;
        },
        (err: unknown) => {
          this.starting = null;
          throw err;
        },
      );
      return this.starting;
    }
    const load = (host: GrammarHost) => host.seqIds.size + 64 * host.numCompiling;
    return this.hosts.reduce((best, host) => (load(host) < load(best) ? host : best));
  }
}
