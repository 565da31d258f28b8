/**
 * Histogram buckets. They are vLLM's (so percentiles read the same on translated dashboards),
 * extended downward where a small model on a CPU answers faster than vLLM's first bucket.
 */

/** Time to first token: vLLM's buckets with 1 ms … 5 ms added. */
export const TTFT_BUCKETS_S = [
  0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20,
  40, 80, 160, 640, 2560,
];

/** Inter-token latency and engine step phases: vLLM's ITL buckets with 0.1 ms … 5 ms added. */
export const ITL_BUCKETS_S = [
  0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
  0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];

/** Whole-request intervals (end to end, queue, prefill, decode): vLLM's with 1 ms … 100 ms added. */
export const REQUEST_BUCKETS_S = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50,
  60, 120, 240, 480, 960, 1920, 7680,
];

/** Tokens per engine step (vLLM's iteration_tokens_total buckets). */
/** Decode steps of one multi-step plan (KILN_NUM_SCHEDULER_STEPS; ADR 0028). */
export const MULTI_STEP_BUCKETS = [2, 3, 4, 6, 8, 12, 16, 24, 32, 64];

export const ITERATION_TOKENS_BUCKETS = [
  1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
];

/** HTTP request durations at the gateway (streams last as long as their generation). */
export const HTTP_BUCKETS_S = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];
