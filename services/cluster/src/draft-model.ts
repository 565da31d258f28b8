import { parseSpeculationConfig } from "@kiln/engine-core";
import { loadConfig, resolveModelDir } from "@kiln/model";
import { tryResolveModelSpec } from "./model-spec";

/**
 * Draft-model speculative decoding under `npm start` (ADR 0017): when KILN_SPECULATIVE_CONFIG
 * names `{"method":"draft_model","model":DIR_OR_REPO,…}`, the draft model's local directory
 * (a Hub repo id is downloaded like KILN_MODEL), else null. Throws before anything starts when
 * the config is invalid, the model cannot be found, or its vocabulary differs from the target's
 * (naming both sizes).
 */
export async function resolveDraftModelDir(
  env: NodeJS.ProcessEnv,
  userCwd: string,
  targetDir: string,
): Promise<string | null> {
  const config = parseSpeculationConfig(env.KILN_SPECULATIVE_CONFIG);
  if (config?.method !== "draft_model") return null;
  const spec = tryResolveModelSpec(config.model, userCwd, "");
  if (spec === null) {
    throw new Error(
      `speculative config: the draft model "${config.model}" is neither a directory nor a Hub repo id`,
    );
  }
  const dir = "dir" in spec.source ? spec.source.dir : await resolveModelDir(spec.source.repoId);
  const [target, draft] = await Promise.all([loadConfig(targetDir), loadConfig(dir)]);
  if (draft.vocabSize !== target.vocabSize) {
    throw new Error(
      `speculative config: the draft model's vocabulary (${draft.vocabSize} tokens, ${dir}) ` +
        `differs from the target's (${target.vocabSize} tokens, ${targetDir})`,
    );
  }
  return dir;
}
