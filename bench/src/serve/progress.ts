import { SingleBar } from "cli-progress";
import type { RequestOutput } from "./client";

/**
 * A progress bar on stderr while a run is in flight: requests done, failures, and the
 * output-token rate so far. On a non-TTY stderr (CI logs) it prints a line every 5 s instead.
 */
export interface Progress {
  readonly onRequestDone: (out: RequestOutput) => void;
  stop(): void;
}

export function createProgress(label: string, numRequests: number): Progress {
  const bar = new SingleBar({
    format: `${label} |{bar}| {value}/{total} req | {failed} failed | {tokps} out tok/s | {duration_formatted}`,
    barCompleteChar: "█",
    barIncompleteChar: "░",
    hideCursor: true,
    noTTYOutput: true,
    notTTYSchedule: 5000,
    etaBuffer: 16,
    stream: process.stderr,
  });
  const started = performance.now();
  let numFailed = 0;
  let numOutputTokens = 0;
  bar.start(numRequests, 0, { failed: 0, tokps: "0" });
  return {
    onRequestDone(out) {
      if (!out.isSuccess) numFailed++;
      numOutputTokens += out.outputLen;
      const seconds = (performance.now() - started) / 1000;
      bar.increment(1, { failed: numFailed, tokps: (numOutputTokens / seconds).toFixed(1) });
    },
    stop() {
      bar.stop();
    },
  };
}
