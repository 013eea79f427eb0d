import type { HttpReply, HttpRequest } from "./transport.ts";

export type RouteHandler = (
  request: HttpRequest,
  params: Record<string, string>,
) => Promise<HttpReply> | HttpReply;

export interface Route {
  method: string;
  /** Path template; `{name}` matches one path segment. */
  path: string;
  handler: RouteHandler;
  /** Set on a route being retired: every response of it then says so (and openapi.yaml marks it deprecated). */
  deprecation?: Deprecation;
}

/** A route being retired: deprecated since a date, answering until its sunset, replaced by its successor. */
export interface Deprecation {
  since: Date;
  sunset: Date;
  /** URI reference of the route that replaces it (e.g. `/v2/events`). */
  successor: string;
}
