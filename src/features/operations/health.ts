import type { HealthReasons } from "../../ports/health.ts";

/**
 * Whether this instance should receive traffic. Each reason is owned by the
 * module that sets and clears it (lifecycle: "draining"; sink: "kafka_unreachable").
 */
export class HealthState implements HealthReasons {
  private readonly reasons = new Set<string>();

  set(reason: string, active: boolean): void {
    if (active) this.reasons.add(reason);
    else this.reasons.delete(reason);
  }

  has(reason: string): boolean {
    return this.reasons.has(reason);
  }

  get ready(): boolean {
    return this.reasons.size === 0;
  }

  list(): string[] {
    return [...this.reasons].sort();
  }
}
