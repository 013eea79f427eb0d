/**
 * A log line that can come at any rate (a record the sink refused, a dead
 * letter dropped), let through at most once per interval with the number of
 * occurrences it stands for: the log stays bounded and readable under a flood,
 * and the count is not lost. The metrics count every occurrence.
 */
export class OccasionalLine {
  private occurrences = 0;
  private loggedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly intervalMs: number) {}

  /** Counts `occurrences`; when the line is due, those since the last line (these included), else undefined. */
  due(occurrences = 1): number | undefined {
    this.occurrences += occurrences;
    const now = performance.now();
    if (now - this.loggedAt < this.intervalMs) return undefined;
    this.loggedAt = now;
    const since = this.occurrences;
    this.occurrences = 0;
    return since;
  }
}
