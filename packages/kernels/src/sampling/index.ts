// Public surface of sampling (ADR 0006). Helpers like argmax stay internal so the package's
// `export *` cannot collide with kernel names.
export { philox2x32, uniform01 } from "./rng";
export { sampleRow, sampleRows } from "./sample-row";
export { createSamplingScratch, type SamplingScratch } from "./scratch";
export { verifyDraftRows } from "./verify-drafts";
