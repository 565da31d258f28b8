import { defineConfig } from "vitest/config";

// In-process app.inject() tests are fast; the real-stack suites start three processes in beforeAll (hookTimeout) and pass their own timeout to long cases.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 90_000 } });
