import { defineConfig } from "vitest/config";

// Benchmark helpers; llama.cpp suites load a model in beforeAll.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 60_000 } });
