import { getLlama, type Llama, LlamaLogLevel } from "node-llama-cpp";

/**
 * llama.cpp through node-llama-cpp, CPU only, from the prebuilt binary that npm installed
 * (@node-llama-cpp/linux-x64 and friends). `build: "never"` keeps it from ever trying to
 * compile or download llama.cpp, so this works offline or fails fast.
 */
export async function loadLlamaCpp(): Promise<Llama> {
  return getLlama({
    gpu: false,
    build: "never",
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
  });
}

/** The loaded binding, or the reason it cannot load here (tests skip with that reason). */
export async function tryLoadLlamaCpp(): Promise<
  { readonly llama: Llama; readonly error: null } | { readonly llama: null; readonly error: string }
> {
  try {
    return { llama: await loadLlamaCpp(), error: null };
  } catch (err) {
    return { llama: null, error: err instanceof Error ? err.message : String(err) };
  }
}
