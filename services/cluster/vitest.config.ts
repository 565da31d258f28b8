import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Unit tests are quick; the compiled-cluster and chart tests pass their own longer timeouts.
    testTimeout: 30_000,
    hookTimeout: 90_000,
    // One file at a time: dist.test.ts rebuilds dist/ that docker.test.ts inspects, and the
    // machine's cores are better spent on one real cluster than on several test files.
    fileParallelism: false,
  },
});
