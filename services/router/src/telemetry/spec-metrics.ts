import type { SpecOutcome } from "@kiln/engine-core";
import { Counter, type Registry, type ReplicaLabels } from "@kiln/telemetry";

/**
 * vLLM's speculative-decoding counters under Kiln's names (ADR 0017), per replica. A "draft" is
 * one sequence's verification in one step; its draft tokens are the tokens proposed; accepted
 * tokens the leading drafts the target agreed with. Per position: how often the draft at
 * 0-based position `position` was accepted. acceptance rate = accepted / draft tokens; mean
 * accepted length = 1 + accepted / drafts.
 */
export class SpecDecodeMetrics {
  private readonly numDrafts: Counter<"model" | "replica">;
  private readonly numDraftTokens: Counter<"model" | "replica">;
  private readonly numAcceptedTokens: Counter<"model" | "replica">;
  private readonly numAcceptedPerPos: Counter<"model" | "replica" | "position">;

  constructor(registry: Registry) {
    const labelNames = ["model", "replica"] as const;
    const registers = [registry];
    this.numDrafts = new Counter({
      name: "kiln_spec_decode_num_drafts_total",
      help: "Speculative verifications (one per sequence and step with draft tokens).",
      labelNames,
      registers,
    });
    this.numDraftTokens = new Counter({
      name: "kiln_spec_decode_num_draft_tokens_total",
      help: "Draft tokens proposed and verified.",
      labelNames,
      registers,
    });
    this.numAcceptedTokens = new Counter({
      name: "kiln_spec_decode_num_accepted_tokens_total",
      help: "Draft tokens accepted by verification.",
      labelNames,
      registers,
    });
    this.numAcceptedPerPos = new Counter({
      name: "kiln_spec_decode_num_accepted_tokens_per_pos_total",
      help: "Draft tokens accepted, by their 0-based position among a verification's drafts.",
      labelNames: ["model", "replica", "position"],
      registers,
    });
  }

  /** The series of a replica exist (at zero) from its connection on. */
  initialize(labels: ReplicaLabels): void {
    this.numDrafts.inc(labels, 0);
    this.numDraftTokens.inc(labels, 0);
    this.numAcceptedTokens.inc(labels, 0);
  }

  /** The verifications a committed step held. */
  record(labels: ReplicaLabels, outcomes: readonly SpecOutcome[]): void {
    if (outcomes.length === 0) return;
    let numDraftTokens = 0;
    let numAccepted = 0;
    for (const o of outcomes) {
      numDraftTokens += o.numDraftTokens;
      numAccepted += o.numAcceptedTokens;
      for (let position = 0; position < o.numAcceptedTokens; position++) {
        this.numAcceptedPerPos.inc({ ...labels, position: String(position) });
      }
    }
    this.numDrafts.inc(labels, outcomes.length);
    this.numDraftTokens.inc(labels, numDraftTokens);
    this.numAcceptedTokens.inc(labels, numAccepted);
  }
}
