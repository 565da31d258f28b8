import { defineConfig } from "vitest/config";

// Pure table checks.
export default defineConfig({ test: { testTimeout: 10_000, hookTimeout: 10_000 } });
