import { defineConfig } from "vitest/config";

// In-process metrics servers and OTLP exporters on ephemeral ports.
export default defineConfig({ test: { testTimeout: 15_000, hookTimeout: 15_000 } });
