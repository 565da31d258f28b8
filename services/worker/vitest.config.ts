import { defineConfig } from "vitest/config";

// A real worker process per suite.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 60_000 } });
