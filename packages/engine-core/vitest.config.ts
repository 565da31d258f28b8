import { defineConfig } from "vitest/config";

// Pure unit and property tests; fast-check runs stay well under 20 s on a loaded 2-core machine.
export default defineConfig({ test: { testTimeout: 20_000, hookTimeout: 10_000 } });
