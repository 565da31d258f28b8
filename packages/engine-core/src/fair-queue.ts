/**
 * Weighted fair queuing across tenants (start-time fair queuing over tokens served).
 *
 * Each tenant has a virtual time: the tokens the scheduler planned for it divided by its weight.
 * When a slot frees, the waiting sequence admitted next is the head (FCFS) of the tenant with the
 * smallest virtual time among the best priority class present. A tenant that was idle re-enters
 * at the smallest virtual time of the tenants still backlogged, so idling banks no credit, and a
 * flood from one tenant delays another tenant's new request by about one slot's turnover.
 *
 * Pure: no clock, no I/O. Owned by the scheduler's state; the planner charges it.
 */

/** The tenant of requests that name none; it competes like any other tenant, weight 1. */
export const DEFAULT_TENANT = "";

/** What the policy needs to know about a waiting candidate. */
export interface FairCandidate {
  readonly tenant: string;
  readonly weight: number;
  readonly priority: number;
}

export class FairQueue {
  /** Virtual time per tenant seen so far (tokens served / weight). */
  private readonly tenantToVtime = new Map<string, number>();
  /** Tenants with a live request, and how many. */
  private readonly tenantToNumLive = new Map<string, number>();

  /** Virtual time of `tenant` (0 for one never served). */
  vtimeOf(tenant: string): number {
    return this.tenantToVtime.get(tenant) ?? 0;
  }

  /**
   * A request of `tenant` arrived. If the tenant had nothing live, its virtual time catches up
   * with the least-served backlogged tenant, so past idleness is not credit.
   */
  onRequestAdded(tenant: string): void {
    const numLive = this.tenantToNumLive.get(tenant) ?? 0;
    if (numLive === 0) {
      let floor = Number.POSITIVE_INFINITY;
      for (const [other, n] of this.tenantToNumLive) {
        if (n > 0) floor = Math.min(floor, this.vtimeOf(other));
      }
      if (Number.isFinite(floor)) {
        this.tenantToVtime.set(tenant, Math.max(this.vtimeOf(tenant), floor));
      }
    }
    this.tenantToNumLive.set(tenant, numLive + 1);
  }

  /** A request of `tenant` finished or was aborted. */
  onRequestFinished(tenant: string): void {
    const numLive = (this.tenantToNumLive.get(tenant) ?? 0) - 1;
    if (numLive > 0) this.tenantToNumLive.set(tenant, numLive);
    else this.tenantToNumLive.delete(tenant);
  }

  /** Records `numTokens` planned for `tenant`, whose weight is `weight` (> 0). */
  charge(tenant: string, weight: number, numTokens: number): void {
    this.tenantToVtime.set(tenant, this.vtimeOf(tenant) + numTokens / weight);
  }

  /**
   * Index in `waiting` (sorted by priority, then arrival) of the sequence to admit next: among the
   * best priority present, the first candidate of the tenant with the least virtual time (ties:
   * the earliest). Null when `waiting` is empty. Does not mutate.
   */
  pickNext<T>(waiting: readonly T[], candidateOf: (item: T) => FairCandidate): number | null {
    if (waiting.length === 0) return null;
    const head = candidateOf(waiting[0]!);
    let bestIndex = 0;
    let bestVtime = this.vtimeOf(head.tenant);
    const seen = new Set<string>([head.tenant]);
    // Every live tenant's head found: nothing further down can win.
    const numLiveTenants = this.tenantToNumLive.size;
    for (let i = 1; i < waiting.length && seen.size < numLiveTenants; i++) {
      const candidate = candidateOf(waiting[i]!);
      if (candidate.priority !== head.priority) break;
      const tenant = candidate.tenant;
      if (seen.has(tenant)) continue;
      seen.add(tenant);
      const vtime = this.vtimeOf(tenant);
      if (vtime < bestVtime) {
        bestVtime = vtime;
        bestIndex = i;
      }
    }
    return bestIndex;
  }
}
