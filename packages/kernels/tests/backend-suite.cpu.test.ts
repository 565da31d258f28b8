import { defineBackendSuite } from "./helpers/backend-suite";
import { cpuUnderTest } from "./helpers/backends";

// The shared backend suite (tests/helpers/backend-suite.ts) on the CPU backend.
defineBackendSuite(cpuUnderTest, cpuUnderTest);
