/**
 * A broken internal invariant or a misused API (a bug, never an expected shortage: those are
 * `null` results). `invariant` names the rule that broke, so tests and logs can match on it.
 */
export class InvariantError extends Error {
  readonly invariant: string;

  constructor(invariant: string, detail?: string) {
    super(detail === undefined ? invariant : `${invariant}: ${detail}`);
    this.name = "InvariantError";
    this.invariant = invariant;
  }
}

/** Throws an InvariantError naming `invariant` unless `condition` holds. */
export function invariant(condition: boolean, name: string, detail?: string): asserts condition {
  if (!condition) throw new InvariantError(name, detail);
}
