/**
 * Reasons this instance should not receive traffic. Each reason is set and
 * cleared by the module that owns it; /health answers 503 while any is set.
 */
export interface HealthReasons {
  set(reason: string, active: boolean): void;
  has(reason: string): boolean;
  /**
   * A fault /health reports while still answering 200 (`degraded`): one every
   * instance shares (a topic Kafka refuses), so taking this one out of
   * service would not route around it, only take every instance out at once.
   */
  degrade(reason: string, active: boolean): void;
}
