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
}
