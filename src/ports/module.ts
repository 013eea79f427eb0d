import type { Route } from "./route.ts";
import type { RunningServer } from "./transport.ts";

/**
 * The phases a module can take part in when the gateway drains, in the order
 * the lifecycle runs them (between them it waits for the load balancer, stops
 * listening, and waits for in-flight requests). Each handler gets the drain's
 * deadline (epoch ms), counted from the signal.
 */
export interface DrainHandlers {
  /** Stop being chosen for traffic (health turns 503). */
  unready?(deadline: number): Promise<void> | void;
  /** Tell long-lived connections to go elsewhere, and close them. */
  disconnect?(deadline: number): Promise<void> | void;
  /** Deliver what was accepted; reject if some of it could not be. */
  flush?(deadline: number): Promise<void> | void;
}

/**
 * What a feature (or a piece of infrastructure) owns, handed to the
 * composition root: the routes it answers, what it needs once the server
 * listens, its part in the drain, and the resources it frees at the end.
 */
export interface Module {
  readonly name: string;
  readonly routes?: Route[];
  /** Called once, when the server listens. */
  attach?(server: RunningServer): void;
  readonly drain?: DrainHandlers;
  /**
   * Frees what the module opened (timers, connections); called once, last,
   * with the drain's deadline (epoch ms), by which a close that waits on the
   * network (exporting the last spans) gives up.
   */
  close?(deadline: number): Promise<void> | void;
}
