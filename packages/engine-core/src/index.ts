export { DEFAULT_MAX_BATCH_HOLD_STEPS } from "./batch-yield";
export { BlockPool, type BlockPoolOptions } from "./block-pool";
export { InvariantError } from "./errors";
export { DEFAULT_TENANT, type FairCandidate, FairQueue } from "./fair-queue";
export {
  type AdapterId,
  asAdapterId,
  asBlockId,
  asRequestId,
  asSeqId,
  type BlockId,
  type RequestId,
  type SeqId,
} from "./ids";
export {
  type Admission,
  type BlockCopy,
  KvCacheManager,
  type KvSeq,
  type PrefixCacheStats,
  type SlotAllocation,
} from "./kv-cache-manager";
export { DEFAULT_LORA_MAX_SKIPS, type LoraLoad, LoraSlots } from "./lora-slots";
export { onOffOption } from "./on-off-option";
export { type CacheNode, cacheNamespace, PrefixCache, type PrefixMatch } from "./prefix-cache";
export { type ScheduleOptions, Scheduler, type StepScheduler } from "./scheduler";
export { type NgramOptions, proposeNgram } from "./speculation/ngram-proposer";
export type { DraftRequest } from "./speculation/plan-drafts";
export { releaseRejectedSlots } from "./speculation/rollback";
export {
  type DraftModelSpeculation,
  type NgramSpeculation,
  parseSpeculationConfig,
  type SpeculationConfig,
} from "./speculation/spec-config";
export {
  AcceptanceTracker,
  bestDraftDepth,
  chooseDraftLens,
  type DraftCandidate,
} from "./speculation/spec-policy";
export { type DraftProposer, type SpecOutcome, SpecState } from "./speculation/spec-state";
export { type StepTimeFit, StepTimeModel } from "./speculation/step-time-model";
export { buildStepArrays, type FlatSeq, type FlatStep, type StepArrays } from "./step-arrays";
export { checkStop, type StopCriteria, type StopDecision, stopTokenIdsOf } from "./stop";
export type {
  AddResult,
  EngineEvent,
  FinishedEvent,
  FinishReason,
  NewRequest,
  PlannedSample,
  PreemptedEvent,
  RejectReason,
  RequestSummary,
  SampledTokenLike,
  ScheduledSeq,
  SchedulerConfig,
  SchedulerStats,
  SeqAbortResult,
  StepPlan,
  StepResult,
  StepResults,
  TokenEvent,
} from "./types";
