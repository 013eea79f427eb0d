import type { HealthReasons } from "../../ports/health.ts";

/**
 * Whether this instance should receive traffic. Each reason is owned by the
 * module that sets and clears it (lifecycle: "draining"; sink: "kafka_connecting",
 * "kafka_unreachable"). An advisory reason is recorded (`has` sees it) but never
 * turns /health 503: KAFKA_AFFECTS_HEALTH=false makes both Kafka reasons advisory,
 * so an outage every instance sees does not take every instance out of the load balancer.
 */
export class HealthState implements HealthReasons {
  private readonly reasons = new Set<string>();
  private readonly advisory: ReadonlySet<string>;
  private readonly degradations = new Set<string>();

  constructor(advisory: Iterable<string> = []) {
    this.advisory = new Set(advisory);
  }

  set(reason: string, active: boolean): void {
    if (active) this.reasons.add(reason);
    else this.reasons.delete(reason);
  }

  degrade(reason: string, active: boolean): void {
    if (active) this.degradations.add(reason);
    else this.degradations.delete(reason);
  }

  has(reason: string): boolean {
    return this.reasons.has(reason);
  }

  get ready(): boolean {
    for (const reason of this.reasons) if (!this.advisory.has(reason)) return false;
    return true;
  }

  /** The reasons that keep this instance out of service. */
  list(): string[] {
    return [...this.reasons].filter((reason) => !this.advisory.has(reason)).sort();
  }

  /** Faults reported without leaving service: degradations (see HealthReasons.degrade) and active advisory reasons. */
  degraded(): string[] {
    const advisory = [...this.reasons].filter((reason) => this.advisory.has(reason));
    return [...this.degradations, ...advisory].sort();
  }
}
