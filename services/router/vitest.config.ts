import { defineConfig } from "vitest/config";

// Real router and worker processes; each describe starts its own and long cases pass their own timeout.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 120_000 } });
