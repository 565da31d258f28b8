import { type LlamaConfig, loadLoraAdapter, ModelError, resolveModelDir } from "@kiln/model";
import { KilnError } from "@kiln/proto";

/** An adapter the gateway serves under its own `model` name. */
export interface ServedAdapter {
  readonly name: string;
  /** The local PEFT directory the worker loads (a Hub id is downloaded first). */
  readonly path: string;
  /** Unix seconds, shown as `created` in /v1/models. */
  readonly created: number;
}

/** Hub download options; tests inject a stub resolver. */
export type ResolveAdapterDir = (spec: string) => Promise<string>;

/**
 * The LoRA adapters the gateway knows by name (ADR 0015). Loading validates the adapter against
 * the base model (rank, targets, shapes, files) before the name becomes usable, so a bad adapter
 * is a 400 here and never reaches a worker. Unloading only removes the name: requests already
 * sent carry the adapter's path and finish.
 */
export class LoraRegistry {
  private readonly adapters = new Map<string, ServedAdapter>();
  /** Names being loaded (a second load of the same name while the first runs is a duplicate). */
  private readonly pending = new Set<string>();
  /** Requests accepted per adapter name since start (kiln_lora_requests_total). */
  readonly requestCounts = new Map<string, number>();

  constructor(
    private readonly baseModelId: string,
    private readonly config: LlamaConfig,
    private readonly maxLoraRank: number,
    private readonly resolveDir: ResolveAdapterDir = (spec) => resolveModelDir(spec),
  ) {}

  get(name: string): ServedAdapter | undefined {
    return this.adapters.get(name);
  }

  /** Counts one request for `name`. */
  countRequest(name: string): void {
    this.requestCounts.set(name, (this.requestCounts.get(name) ?? 0) + 1);
  }

  list(): ServedAdapter[] {
    return [...this.adapters.values()];
  }

  /** Validates and registers `name`; throws KilnError INVALID_REQUEST with the reason. */
  async load(name: string, spec: string): Promise<ServedAdapter> {
    if (name === "" || name.trim() !== name) {
      throw new KilnError("INVALID_REQUEST", "'lora_name' must be a non-empty name.", "lora_name");
    }
    if (name === this.baseModelId) {
      throw new KilnError("INVALID_REQUEST", `'${name}' is the base model's name.`, "lora_name");
    }
    if (this.adapters.has(name) || this.pending.has(name)) {
      throw new KilnError(
        "INVALID_REQUEST",
        `The LoRA adapter '${name}' has already been loaded.`,
        "lora_name",
      );
    }
    this.pending.add(name);
    try {
      const path = await this.resolveDir(spec);
      await loadLoraAdapter(path, this.config, this.maxLoraRank);
      const adapter = { name, path, created: Math.floor(Date.now() / 1000) };
      this.adapters.set(name, adapter);
      return adapter;
    } catch (err) {
      if (err instanceof ModelError) {
        throw new KilnError(
          "INVALID_REQUEST",
          `Cannot load LoRA adapter '${name}' from ${spec}: ${err.message}`,
          "lora_path",
        );
      }
      throw err;
    } finally {
      this.pending.delete(name);
    }
  }

  /** Removes `name`; throws KilnError NOT_FOUND (404) when it is not loaded. */
  unload(name: string): void {
    if (!this.adapters.delete(name)) {
      throw new KilnError("NOT_FOUND", `The LoRA adapter '${name}' is not loaded.`, "lora_name");
    }
  }
}

/** Parses KILN_LORA_MODULES / --lora-modules: "name=path,name2=path2". Throws naming the entry. */
export function parseLoraModules(text: string | undefined): { name: string; path: string }[] {
  if (text === undefined || text.trim() === "") return [];
  return text.split(",").map((entry) => {
    const eq = entry.indexOf("=");
    const name = entry.slice(0, eq).trim();
    const path = entry.slice(eq + 1).trim();
    if (eq < 0 || name === "" || path === "") {
      throw new Error(`--lora-modules: expected name=path, got "${entry}"`);
    }
    return { name, path };
  });
}
