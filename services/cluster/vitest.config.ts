import { defineConfig } from "vitest/config";

// Real-process tests (the supervisor and its children) set their own, longer timeouts.
export default defineConfig({ test: { testTimeout: 10_000, hookTimeout: 30_000 } });
