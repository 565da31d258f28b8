/**
 * @kiln/test-support: the helpers every package's tests share. Import from here instead of
 * writing a local copy (paths to ../shared, golden files, polling, seeded data, CI guards).
 */
export { hasBinary, isCi, requireAvailable } from "./ci";
export { type GoldenCase, type GoldenFile, loadGolden, loadGoldenCases } from "./golden";
export { helmBinary, readZipEntry } from "./helm";
export { scrapeSum, sumSamples } from "./metrics";
export * from "./paths";
export { freePort } from "./ports";
export { mulberry32 } from "./rng";
export { sleep, type WaitForOptions, waitFor } from "./wait";
