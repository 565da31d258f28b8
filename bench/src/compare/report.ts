import type { BenchMetrics } from "../serve/metrics";
import { markdownTable } from "../serve/report";
import type { CpuShare } from "./cpu-usage";
import type { StepSplit } from "./step-split";

/** The tables `bench:compare` prints (Markdown, so docs/benchmarks.md can quote them as is). */

export interface SystemRun {
  readonly system: string;
  readonly maxConcurrency: number;
  readonly metrics: BenchMetrics;
  /** How the machine's CPU was spent during the run (null off Linux). */
  readonly cpu?: CpuShare;
}

const f = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "–");

/** One row per system and concurrency: throughput and latency percentiles. */
export function resultsTable(runs: readonly SystemRun[]): string {
  const header = [
    "system",
    "conc",
    "req/s",
    "out tok/s",
    "TTFT mean",
    "TTFT med",
    "TTFT p99",
    "TPOT mean",
    "TPOT med",
    "TPOT p99",
    "ITL med",
    "ITL p99",
    "E2EL med",
    "E2EL p99",
    "fail",
    "others' CPU",
  ];
  const rows = runs.map(({ system, maxConcurrency, metrics: m, cpu }) => {
    const others = cpu?.others ?? null;
    return [
      system,
      String(maxConcurrency),
      f(m.requestThroughput, 2),
      f(m.outputThroughput),
      f(m.ttftMs.mean),
      f(m.ttftMs.median),
      f(m.ttftMs.p99),
      f(m.tpotMs.mean),
      f(m.tpotMs.median),
      f(m.tpotMs.p99),
      f(m.itlMs.median),
      f(m.itlMs.p99),
      f(m.e2elMs.median),
      f(m.e2elMs.p99),
      String(m.numFailed),
      others === null ? "–" : `${f(100 * others, 0)}%`,
    ];
  });
  return `${markdownTable(header, rows)}\n(latencies in ms; others' CPU: share of the machine's CPU used by processes outside the benchmark during the run)`;
}

/**
 * Kiln ÷ llama.cpp at each concurrency both ran. Throughput ratios above 1 and latency
 * ratios below 1 favour Kiln.
 */
export function ratioTable(runs: readonly SystemRun[], kiln: string, baseline: string): string {
  const header = [
    "conc",
    "out tok/s ×",
    "req/s ×",
    "TTFT med ×",
    "TPOT med ×",
    "ITL med ×",
    "E2EL med ×",
  ];
  const rows: string[][] = [];
  for (const k of runs.filter((r) => r.system === kiln)) {
    const b = runs.find((r) => r.system === baseline && r.maxConcurrency === k.maxConcurrency);
    if (!b) continue;
    const x = (kv: number, bv: number) => f(kv / bv, 2);
    rows.push([
      String(k.maxConcurrency),
      x(k.metrics.outputThroughput, b.metrics.outputThroughput),
      x(k.metrics.requestThroughput, b.metrics.requestThroughput),
      x(k.metrics.ttftMs.median, b.metrics.ttftMs.median),
      x(k.metrics.tpotMs.median, b.metrics.tpotMs.median),
      x(k.metrics.itlMs.median, b.metrics.itlMs.median),
      x(k.metrics.e2elMs.median, b.metrics.e2elMs.median),
    ]);
  }
  return `${markdownTable(header, rows)}\n(${kiln} ÷ ${baseline}: throughput > 1 and latency < 1 favour ${kiln})`;
}

/** One router step-profile line (services/router, KILN_STEP_PROFILE=1). */
export interface StepProfileLine {
  readonly stepId: number;
  readonly numSeqs: number;
  readonly numTokens: number;
  readonly scheduleMs: number;
  readonly rpcMs: number;
  readonly computeMs: number;
  readonly commitMs: number;
}

/** One worker step-profile line (services/worker, KILN_STEP_PROFILE=1). */
export interface WorkerStepProfileLine {
  readonly stepId: number;
  readonly applyMs: number;
  readonly backendMs: number;
}

/** Medians (ms) of each part over the profiled steps. */
export interface StepProfile {
  readonly numSteps: number;
  readonly batch: number;
  readonly scheduleMs: number;
  readonly commitMs: number;
  readonly rpcMs: number;
  readonly computeMs: number;
  readonly applyMs: number;
  readonly backendMs: number;
  /** In-process measurement of CpuModelRunner.step and of sampling on the same batch. */
  readonly split: StepSplit;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)]! : Number.NaN;
}

/**
 * Medians over the pure decode steps at `batch` (numSeqs = numTokens = batch), joining the
 * router's and the worker's lines by stepId.
 */
export function summarizeProfile(
  routerLines: readonly StepProfileLine[],
  workerLines: readonly WorkerStepProfileLine[],
  batch: number,
  split: StepSplit,
): StepProfile {
  const idToWorker = new Map(workerLines.map((w) => [w.stepId, w]));
  const steps = routerLines.filter(
    (l) => l.numSeqs === batch && l.numTokens === batch && idToWorker.has(l.stepId),
  );
  const worker = steps.map((s) => idToWorker.get(s.stepId)!);
  return {
    numSteps: steps.length,
    batch,
    scheduleMs: median(steps.map((s) => s.scheduleMs)),
    commitMs: median(steps.map((s) => s.commitMs)),
    rpcMs: median(steps.map((s) => s.rpcMs)),
    computeMs: median(steps.map((s) => s.computeMs)),
    applyMs: median(worker.map((w) => w.applyMs)),
    backendMs: median(worker.map((w) => w.backendMs)),
    split,
  };
}

/**
 * Where the time of one decode step goes, in ms and as a share of the step. Everything is
 * measured in the benchmark's processes except sampling, which the worker does not report
 * apart: it is timed in-process on the same batch's logits and subtracted from backend.step.
 */
export function profileTable(p: StepProfile): string {
  const total = p.scheduleMs + p.rpcMs + p.commitMs;
  const parts: [string, number][] = [
    ["router: schedule (plan + encode)", p.scheduleMs],
    ["router: commit (append, stop checks, emit)", p.commitMs],
    ["gRPC round trip + (de)serialization", p.rpcMs - p.computeMs],
    ["worker: apply step delta", p.applyMs],
    ["worker: kernels (forward + lm_head, thread hand-off)", p.backendMs - p.split.samplingMs],
    ["worker: sampling (greedy + logprob)", p.split.samplingMs],
  ];
  const rows = parts.map(([name, ms]) => [name, f(ms, 2), `${f((100 * ms) / total, 1)}%`]);
  rows.push(["step (schedule + rpc + commit)", f(total, 2), "100%"]);
  const note =
    `(medians of ${p.numSteps} decode steps at batch ${p.batch}, each part its own median; ` +
    `sampling timed in-process on the batch's logits; in-process CpuModelRunner.step ` +
    `${f(p.split.stepMs, 2)} ms vs backend.step ${f(p.backendMs, 2)} ms in the worker)`;
  return `${markdownTable(["part of a decode step", "ms", "share"], rows)}\n${note}`;
}

/** How the machine's CPU was spent during one run, one row per process. */
export function cpuTable(run: SystemRun): string {
  const cpu = run.cpu;
  if (!cpu) return "";
  const rows = Object.entries(cpu.byProcess).map(([name, share]) => [
    name,
    `${f(100 * share, 1)}%`,
  ]);
  if (cpu.others !== null)
    rows.push(["other processes on the machine", `${f(100 * cpu.others, 1)}%`]);
  if (cpu.total !== null) rows.push(["machine total", `${f(100 * cpu.total, 1)}%`]);
  return `${markdownTable(["process", "share of the machine's CPU"], rows)}\n(${run.system} at concurrency ${run.maxConcurrency}; 100% = every core busy for the whole run)`;
}
