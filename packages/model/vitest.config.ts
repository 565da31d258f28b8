import { defineConfig } from "vitest/config";

// Tokenizer and loader tests; large-load writes and maps a multi-hundred-MiB checkpoint.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
