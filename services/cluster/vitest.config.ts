import { defineConfig } from "vitest/config";

// Child processes under the supervisor's code path.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
