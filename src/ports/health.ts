/**
 * Reasons this instance should not receive traffic. Each reason is set and
 * cleared by the module that owns it; /health answers 503 while any is set.
 */
export interface HealthReasons {
  set(reason: string, active: boolean): void;
  has(reason: string): boolean;
}
