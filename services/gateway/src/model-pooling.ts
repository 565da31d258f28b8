import { readFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * The pooling a sentence-transformers checkpoint declares (`modules.json` names the Pooling
 * module's folder, usually `1_Pooling/config.json`): "mean" for pooling_mode_mean_tokens,
 * "last" for pooling_mode_lasttoken, null when the model declares neither (or has no such
 * files). KILN_POOLING / --pooling override it.
 */
export async function modelPooling(modelDir: string): Promise<"last" | "mean" | null> {
  const folder = (await poolingFolder(modelDir)) ?? "1_Pooling";
  const config = (await readJson(join(modelDir, folder, "config.json"))) as {
    pooling_mode_mean_tokens?: unknown;
    pooling_mode_lasttoken?: unknown;
  } | null;
  if (config?.pooling_mode_mean_tokens === true) return "mean";
  if (config?.pooling_mode_lasttoken === true) return "last";
  return null;
}

async function poolingFolder(modelDir: string): Promise<string | null> {
  const modules = await readJson(join(modelDir, "modules.json"));
  if (!Array.isArray(modules)) return null;
  const entries = modules as ({ type?: unknown; path?: unknown } | null)[];
  const pooling = entries.find((m) => typeof m?.type === "string" && m.type.endsWith(".Pooling"));
  return typeof pooling?.path === "string" ? pooling.path : null;
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as unknown;
  } catch {
    return null;
  }
}
