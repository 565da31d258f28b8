import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";

/** One tenant as configured (camelCase; limits absent mean "no limit"). */
export interface TenantConfig {
  readonly name: string;
  readonly requestsPerMinute: number | null;
  readonly tokensPerMinute: number | null;
  readonly maxConcurrentRequests: number | null;
  /** Share of the scheduler under contention (weighted fair queuing). */
  readonly weight: number;
  /** Base models and adapters the tenant may use; "*" is any. */
  readonly models: readonly string[];
  /** Cap on max_tokens per request. */
  readonly maxTokens: number | null;
}

/** Who a key belongs to. `keyId` identifies the key in logs without revealing it. */
export interface KeyOwner {
  readonly tenant: TenantConfig;
  readonly keyId: string;
  readonly isAdmin: boolean;
}

const positiveInt = z.number().int().positive();
const keySchema = z
  .string()
  .min(1)
  .refine((k) => !k.startsWith("sha256:") || /^sha256:[0-9a-fA-F]{64}$/.test(k), {
    message: "a sha256: key is 64 hex digits",
  });
const tenantSchema = z
  .object({
    name: z.string().min(1).max(128),
    api_keys: z.array(keySchema).default([]),
    requests_per_minute: positiveInt.optional(),
    tokens_per_minute: positiveInt.optional(),
    max_concurrent_requests: positiveInt.optional(),
    weight: z.number().positive().finite().default(1),
    models: z.array(z.string().min(1)).default(["*"]),
    max_tokens: positiveInt.optional(),
  })
  .strict();
const fileSchema = z
  .object({ admin_keys: z.array(keySchema).default([]), tenants: z.array(tenantSchema) })
  .strict();

/** A tenant named `name` with no limits, weight 1 and every model; a fresh object. */
export function unlimitedTenant(name: string): TenantConfig {
  return {
    name,
    requestsPerMinute: null,
    tokensPerMinute: null,
    maxConcurrentRequests: null,
    weight: 1,
    models: ["*"],
    maxTokens: null,
  };
}

/** The admin keys' tenant. */
const ADMIN_TENANT = unlimitedTenant("admin");

interface KeyEntry {
  /** sha256 of the key (32 bytes). */
  readonly digest: Buffer;
  readonly owner: KeyOwner;
}

const sha256 = (text: string): Buffer => createHash("sha256").update(text).digest();

/**
 * A parsed keys file: looks up the owner of a presented key. Keys are stored as sha256 digests
 * (plain keys are hashed on load) and every lookup compares against every digest with
 * `timingSafeEqual`, so timing reveals neither which key matched nor how much of it.
 */
export class KeyTable {
  private constructor(
    private readonly entries: readonly KeyEntry[],
    readonly tenants: readonly TenantConfig[],
  ) {}

  /** Parses the file's text. Throws an Error saying what is wrong (the caller keeps the old table). */
  static parse(text: string): KeyTable {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`not valid JSON: ${(err as Error).message}`);
    }
    const parsed = fileSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`${issue.path.join(".") || "(root)"}: ${issue.message}`);
    }
    const entries: KeyEntry[] = [];
    const seen = new Set<string>();
    const add = (key: string, tenant: TenantConfig, isAdmin: boolean) => {
      const digest = key.startsWith("sha256:") ? Buffer.from(key.slice(7), "hex") : sha256(key);
      const hex = digest.toString("hex");
      if (seen.has(hex)) throw new Error(`a key is listed twice (key id ${hex.slice(0, 12)})`);
      seen.add(hex);
      entries.push({ digest, owner: { tenant, keyId: `key-${hex.slice(0, 12)}`, isAdmin } });
    };
    for (const key of parsed.data.admin_keys) add(key, ADMIN_TENANT, true);
    const tenants: TenantConfig[] = [];
    const names = new Set<string>();
    for (const t of parsed.data.tenants) {
      if (names.has(t.name)) throw new Error(`tenant "${t.name}" is listed twice`);
      names.add(t.name);
      const tenant: TenantConfig = {
        name: t.name,
        requestsPerMinute: t.requests_per_minute ?? null,
        tokensPerMinute: t.tokens_per_minute ?? null,
        maxConcurrentRequests: t.max_concurrent_requests ?? null,
        weight: t.weight,
        models: t.models,
        maxTokens: t.max_tokens ?? null,
      };
      tenants.push(tenant);
      for (const key of t.api_keys) add(key, tenant, false);
    }
    return new KeyTable(entries, tenants);
  }

  /** `KILN_API_KEYS` as a table: each key is an admin of the default tenant. */
  static fromPlainKeys(keys: readonly string[]): KeyTable {
    return KeyTable.parse(JSON.stringify({ admin_keys: keys, tenants: [] }));
  }

  /** Both tables' keys; `this` wins on a tenant name both define. Throws on a key in both. */
  merge(other: KeyTable): KeyTable {
    const names = new Set(this.tenants.map((t) => t.name));
    const tenants = [...this.tenants, ...other.tenants.filter((t) => !names.has(t.name))];
    const digests = new Set(this.entries.map((e) => e.digest.toString("hex")));
    const extra = other.entries.filter((e) => !digests.has(e.digest.toString("hex")));
    return new KeyTable([...this.entries, ...extra], tenants);
  }

  /** The key's owner, or null for an unknown key. Constant time in the key's content. */
  lookup(key: string): KeyOwner | null {
    const digest = sha256(key);
    let found: KeyOwner | null = null;
    for (const entry of this.entries) {
      // No early exit: every entry is compared whatever matched.
      if (timingSafeEqual(entry.digest, digest)) found = entry.owner;
    }
    return found;
  }

  get numKeys(): number {
    return this.entries.length;
  }
}

/** Whether `tenant` may use `model` (a base model name or an adapter name). */
export function isModelAllowed(tenant: TenantConfig, model: string): boolean {
  return tenant.models.some((m) => m === "*" || m === model);
}
