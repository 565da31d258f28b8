/** What a StopMatcher lets through for one piece of text. */
export interface StopResult {
  /** Text that can be emitted now: never part of a stop string. */
  readonly text: string;
  /** A stop string was found; everything from it on is dropped and nothing follows. */
  readonly isStopped: boolean;
}

/**
 * Finds stop strings in a stream of text pieces, across piece (token) boundaries. Text that
 * could still become the start of a stop string is held back until it cannot; the stop string
 * itself and anything after it are never emitted (OpenAI semantics).
 */
export class StopMatcher {
  private pending = "";
  private isDone = false;
  private readonly maxStopLen: number;

  constructor(private readonly stops: readonly string[]) {
    this.maxStopLen = Math.max(0, ...stops.map((s) => s.length));
  }

  get isStopped(): boolean {
    return this.isDone;
  }

  push(piece: string): StopResult {
    if (this.isDone) return { text: "", isStopped: true };
    if (this.stops.length === 0) return { text: piece, isStopped: false };
    const text = this.pending + piece;
    const stopAt = earliestMatch(text, this.stops);
    if (stopAt !== null) {
      this.pending = "";
      this.isDone = true;
      return { text: text.slice(0, stopAt), isStopped: true };
    }
    const holdLen = heldSuffixLen(text, this.stops, this.maxStopLen);
    this.pending = text.slice(text.length - holdLen);
    return { text: text.slice(0, text.length - holdLen), isStopped: false };
  }

  /** The held-back text, once no more pieces will come. */
  flush(): string {
    const text = this.pending;
    this.pending = "";
    return this.isDone ? "" : text;
  }
}

/** Index of the first stop string occurrence in `text`, or null. */
function earliestMatch(text: string, stops: readonly string[]): number | null {
  let best: number | null = null;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (at >= 0 && (best === null || at < best)) best = at;
  }
  return best;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function heldSuffixLen(text: string, stops: readonly string[], maxStopLen: number): number {
  for (let len = Math.min(text.length, maxStopLen - 1); len > 0; len--) {
    const suffix = text.slice(text.length - len);
    if (stops.some((s) => s.length > len && s.startsWith(suffix))) return len;
  }
  return 0;
}
