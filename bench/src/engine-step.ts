/**
 * Engine-step benchmark: how long the router's scheduler takes to plan and commit one step with
 * 256 running sequences (steady-state decode), and to flatten a plan into StepInput arrays.
 * The worker is faked (every sequence samples token 1), so this measures engine-core alone.
 *
 *   npm run bench:engine            (env: STEPS=2000 SEQS=256 PROMPT=512)
 */
import { cpus, loadavg } from "node:os";
import { asRequestId, buildStepArrays, Scheduler, type StepPlan } from "@kiln/engine-core";

const numSeqs = Number(process.env.SEQS ?? 256);
const numSteps = Number(process.env.STEPS ?? 2000);
const promptLen = Number(process.env.PROMPT ?? 512);
const numWarmupSteps = 200;
const blockSize = 16;
const maxModelLen = promptLen + numWarmupSteps + numSteps + 64;

type Token = { readonly tokenId: number; readonly logprob: number };
const token: Token = { tokenId: 1, logprob: -0.5 };

function answer(plan: StepPlan<null>): (Token | null)[] {
  return plan.seqs.map((seq) => (seq.sample === null ? null : token));
}

function summarize(label: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const fmt = (ms: number): string => `${ms.toFixed(3)} ms`;
  console.log(
    `${label}: mean ${fmt(mean)}, median ${fmt(at(0.5))}, p99 ${fmt(at(0.99))}, max ${fmt(sorted.at(-1)!)} (${samples.length} steps)`,
  );
}

function main(): void {
  let now = 0;
  const scheduler = new Scheduler<null, Token>({
    numBlocks: Math.ceil((numSeqs * maxModelLen) / blockSize) + 16,
    blockSize,
    maxNumBatchedTokens: 8192,
    maxNumSeqs: numSeqs,
    maxModelLen,
    clock: () => now++,
  });
  for (let i = 0; i < numSeqs; i++) {
    // Distinct prompts (no prefix sharing) of promptLen tokens.
    const promptTokenIds = Array.from({ length: promptLen }, (_, j) => (i * 7919 + j * 31) % 32000);
    scheduler.addRequest({
      requestId: asRequestId(`req-${i}`),
      promptTokenIds,
      sampling: null,
      ignoreEos: true,
      maxTokens: numWarmupSteps + numSteps + 32,
    });
  }
  // Prefill until every sequence decodes.
  for (let guard = 0; ; guard++) {
    const plan = scheduler.schedule();
    scheduler.commit(plan, answer(plan));
    if (plan.seqs.length === numSeqs && plan.numScheduledTokens === numSeqs) break;
    if (guard > 10_000) throw new Error("prefill did not finish");
  }
  // Warm up (JIT) on steps that are not measured.
  for (let step = 0; step < numWarmupSteps; step++) {
    const plan = scheduler.schedule();
    scheduler.commit(plan, answer(plan));
    buildStepArrays(plan, blockSize);
  }
  const stepMs: number[] = [];
  // CPU time of the process over the same span: wall time minus time descheduled by the OS
  // (this machine's cores are shared), plus any GC helper threads.
  const stepCpuMs: number[] = [];
  const flattenMs: number[] = [];
  for (let step = 0; step < numSteps; step++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const plan = scheduler.schedule();
    const sampled = answer(plan);
    scheduler.commit(plan, sampled);
    const t1 = performance.now();
    const cpu = process.cpuUsage(cpu0);
    buildStepArrays(plan, blockSize);
    const t2 = performance.now();
    if (plan.seqs.length !== numSeqs) throw new Error(`step ${step} ran ${plan.seqs.length} seqs`);
    stepMs.push(t1 - t0);
    stepCpuMs.push((cpu.user + cpu.system) / 1000);
    flattenMs.push(t2 - t1);
  }
  const stats = scheduler.stats();
  console.log(
    `engine step: ${numSeqs} running sequences decoding, contexts ${promptLen + numWarmupSteps}→${promptLen + numWarmupSteps + numSteps}, blockSize ${blockSize}, ${stats.numUsedBlocks} blocks in use`,
  );
  summarize("schedule + commit (wall)", stepMs);
  summarize("schedule + commit (cpu) ", stepCpuMs);
  summarize("buildStepArrays (wall)   ", flattenMs);
  console.log(
    `load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} on ${cpus().length} cores`,
  );
}

main();
