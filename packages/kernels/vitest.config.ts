import { defineConfig } from "vitest/config";

// Whole golden forward passes (the TypeScript GEMM fallback included) run for tens of seconds on a loaded 2-core machine.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 30_000 } });
