import { describe, expect, it } from "vitest";
import { parseBatchConfig } from "../src/batch/config";

describe("batch settings: flag, environment variable, default", () => {
  it("reads the yielding and expiry settings (issue 15)", () => {
    expect(parseBatchConfig([], {})).toMatchObject({
      concurrency: 4,
      busyConcurrency: 1,
      completionWindowS: 86_400,
    });
    const env = { KILN_BATCH_CONCURRENCY_BUSY: "3", KILN_BATCH_COMPLETION_WINDOW_S: "60" };
    expect(parseBatchConfig([], env)).toMatchObject({ busyConcurrency: 3, completionWindowS: 60 });
    const argv = ["--batch-concurrency-busy", "2", "--batch-completion-window-s", "5"];
    expect(parseBatchConfig(argv, env)).toMatchObject({ busyConcurrency: 2, completionWindowS: 5 });
    expect(() => parseBatchConfig(["--batch-completion-window-s", "0"], {})).toThrow(
      /--batch-completion-window-s/,
    );
  });
});
