import { loadTokenizer } from "@kiln/model";
import type { Prompt } from "./client";
import {
  type BenchRequest,
  prefixRepetitionDataset,
  randomDataset,
  type VocabInfo,
} from "./datasets";
import type { WorkItem } from "./runner";

/** A dataset choice as the command line gives it; `buildWorkload` turns it into requests. */
export type DatasetSpec =
  | {
      readonly name: "random";
      readonly inputLen: number;
      readonly outputLen: number;
      readonly rangeRatio: number;
    }
  | {
      readonly name: "prefix-repetition";
      readonly prefixLen: number;
      readonly suffixLen: number;
      readonly numPrefixes: number;
      readonly outputLen: number;
    };

export interface WorkloadOptions {
  readonly dataset: DatasetSpec;
  readonly numPrompts: number;
  readonly seed: number;
  readonly vocab: VocabInfo;
  /**
   * "ids" sends token-id arrays (exact lengths; needs a server that takes them, as Kiln and
   * vLLM do). "text" decodes the ids with the tokenizer in `tokenizerDir`: any OpenAI server
   * and chat endpoints accept it, but the server's re-tokenization may shift lengths a little.
   */
  readonly promptFormat: "ids" | "text";
  readonly tokenizerDir: string | null;
}

export function datasetRequests(opts: WorkloadOptions): BenchRequest[] {
  const d = opts.dataset;
  if (d.name === "random") {
    return randomDataset(opts.vocab, {
      numPrompts: opts.numPrompts,
      inputLen: d.inputLen,
      outputLen: d.outputLen,
      rangeRatio: d.rangeRatio,
      seed: opts.seed,
    });
  }
  return prefixRepetitionDataset(opts.vocab, {
    numPrompts: opts.numPrompts,
    prefixLen: d.prefixLen,
    suffixLen: d.suffixLen,
    numPrefixes: d.numPrefixes,
    outputLen: d.outputLen,
    seed: opts.seed,
  });
}

/** The requests of a run, each with the prompt in the format the target takes. */
export async function buildWorkload(opts: WorkloadOptions): Promise<WorkItem[]> {
  const requests = datasetRequests(opts);
  let toPrompt = (ids: readonly number[]): Prompt => ({ ids });
  if (opts.promptFormat === "text") {
    if (!opts.tokenizerDir) throw new Error("--prompt-format text needs --tokenizer <dir>");
    const tokenizer = await loadTokenizer(opts.tokenizerDir);
    const bos = opts.vocab.bosId;
    // The server adds BOS itself to a text prompt; send the text of the rest.
    toPrompt = (ids) => ({
      text: tokenizer.decode(bos !== null && ids[0] === bos ? ids.slice(1) : ids),
    });
  }
  return requests.map((r) => ({
    prompt: toPrompt(r.promptIds),
    promptLen: r.promptIds.length,
    outputLen: r.outputLen,
  }));
}

/** A short description for titles and result files, e.g. "random 128→128". */
export function describeDataset(d: DatasetSpec): string {
  return d.name === "random"
    ? `random in=${d.inputLen} out=${d.outputLen}${d.rangeRatio ? ` ±${d.rangeRatio * 100}%` : ""}`
    : `prefix-repetition ${d.numPrefixes}×prefix=${d.prefixLen} suffix=${d.suffixLen} out=${d.outputLen}`;
}
