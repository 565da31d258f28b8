import { defineConfig } from "vitest/config";

// Unit tests are quick; the compiled-cluster and chart tests pass their own longer timeouts.
export default defineConfig({ test: { testTimeout: 10_000, hookTimeout: 90_000 } });
