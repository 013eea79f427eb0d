import { createHash } from "node:crypto";
import { GatewayError, isGatewayError } from "../domain/errors.ts";
import type { Principal } from "../domain/principal.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { IdempotencyStore } from "../ports/idempotency.ts";
import type { HttpReply, HttpRequest } from "../ports/transport.ts";
import { replyHeaders } from "./header-block.ts";
import { errorReply } from "./reply.ts";

/**
 * The field is an sf-string (draft-ietf-httpapi-idempotency-key-header, RFC 8941 §3.3.3): printable
 * ASCII in quotes, where `"` and `\` are escaped as `\"` and `\\`, so a client's structured-field
 * serializer can send any key; leniently, the bare text (printable ASCII without `"` or `,`). The
 * key, its escapes undone, is 1 to 255 characters. A bare comma is refused: both engines join two
 * Idempotency-Key fields into `k1, k2` (RFC 9110 §5.3), which would otherwise be taken as one key.
 */
const SF_STRING = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255})"$/;
const BARE_KEY = /^[\x20\x21\x23-\x2b\x2d-\x7e]{1,255}$/;
const REPLAYED = "idempotency-replayed";

/**
 * Whose keys a request's key is among: the tenant, the token's subject and its
 * `channels` claim. A replay answers without running the request's checks, so
 * it must only reach a caller whose request would have passed them: another
 * token of the tenant limited to other channels (or another subject) runs its
 * own request and gets its own answer (a 403 for a channel it may not use),
 * not the first caller's 202. The tenant and the channel patterns hold no
 * newline, so the subject between them is read back whole.
 */
export function idempotencyScope(principal: Principal): string {
  // A claim of no channels (`[]`, which allows none) must not read as no claim (every channel).
  const channels = principal.channels === undefined ? "" : `[${principal.channels.join(" ")}]`;
  return `${principal.tenant}\n${principal.subject}\n${channels}`;
}

/**
 * `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header) for a POST
 * route: the first request with a key runs; a repeat with the same key and the
 * same request (method, path, query, content type, and the body's bytes with
 * its content coding undone: plain or gzip at any level is one body) within the
 * window gets the first final answer again, marked `Idempotency-Replayed:
 * true`, and runs nothing; the same key with another body is a 422; a repeat
 * while the first still runs is a 409. Keys are scoped to the caller (see
 * `idempotencyScope`) and the route. Final answers are the 2xx and 4xx ones except 409 and 429; after a
 * 5xx or a 429 the key is released, so a retry runs again.
 */
export class Idempotency {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly metrics: Pick<Metrics, "idempotencyOutcomes">,
  ) {}

  /**
   * `handle` runs at most once per key (as `idempotencyKeyOf` read it); without the header this is
   * never called (no cost). `body` is the body as read: its content coding undone.
   */
  async run(
    request: HttpRequest,
    key: string,
    scope: string,
    body: Uint8Array,
    handle: () => Promise<HttpReply>,
  ): Promise<HttpReply> {
    const id = `${scope}\n${request.path}\n${key}`;
    const fingerprint = fingerprintOf(request, body);
    const claim = await this.store.claim(id, fingerprint);
    if (claim.state !== "claimed") {
      if (claim.fingerprint !== fingerprint) {
        this.metrics.idempotencyOutcomes.inc({ outcome: "key_reused" });
        throw new GatewayError(
          "idempotency_key_reused",
          "this Idempotency-Key was used with another request (body, content type or query)",
        );
      }
      if (claim.state === "pending") {
        this.metrics.idempotencyOutcomes.inc({ outcome: "in_flight" });
        throw new GatewayError(
          "idempotency_in_flight",
          "a request with this Idempotency-Key is still being handled",
          { "retry-after": "1" },
        );
      }
      this.metrics.idempotencyOutcomes.inc({ outcome: "replayed" });
      return {
        status: claim.reply.status,
        headers: { ...claim.reply.headers, [REPLAYED]: "true" },
        body: claim.reply.body,
      };
    }
    this.metrics.idempotencyOutcomes.inc({ outcome: "first" });
    let reply: HttpReply;
    try {
      reply = await handle();
    } catch (error) {
      const eventual = isGatewayError(error) ? error.eventualAnswer : undefined;
      if (eventual !== undefined) {
        this.settleWhenDone(id, fingerprint, eventual);
        throw error;
      }
      const answer = isGatewayError(error) ? errorReply(error) : undefined;
      await this.settle(id, fingerprint, answer);
      throw error;
    }
    await this.settle(id, fingerprint, reply);
    return reply;
  }

  /**
   * The request's work goes on (records past their deadline): the key stays pending (a repeat gets
   * 409) until it ends, then holds its answer, or is freed if it failed. Its handlers are made here,
   * not in `run`: on Bun a closure made in an async function keeps that function's whole scope, the
   * request's body and `handle` (and all it captured) included, until Kafka settles.
   */
  private settleWhenDone(id: string, fingerprint: string, eventual: Promise<unknown>): void {
    eventual.then(
      (reply) => this.settle(id, fingerprint, reply as HttpReply),
      () => this.store.release(id),
    );
  }

  private settle(id: string, fingerprint: string, reply: HttpReply | undefined): Promise<void> {
    if (reply === undefined || !isFinal(reply.status) || typeof reply.body !== "string")
      return this.store.release(id);
    return this.store.complete(id, fingerprint, {
      status: reply.status,
      // Its own and its shared headers (a budget's RateLimit fields, the content type) alike.
      headers: replyHeaders(reply) ?? {},
      body: reply.body,
    });
  }
}

/**
 * The request's Idempotency-Key: the key its field names (an sf-string's value: `"a\"b"` is `a"b`;
 * the bare `a\b` and `"a\\b"` are one key), undefined without the field. A malformed one is a 400,
 * asked for with the headers alone, so the routes answer it before the body is uploaded.
 */
export function idempotencyKeyOf(request: HttpRequest): string | undefined {
  const header = request.header("idempotency-key");
  if (header === undefined) return undefined;
  const key = header.startsWith('"')
    ? SF_STRING.exec(header)?.[1]?.replace(/\\(["\\])/g, "$1")
    : BARE_KEY.test(header)
      ? header
      : undefined;
  if (key === undefined)
    throw new GatewayError(
      "bad_request",
      'Idempotency-Key must be one field: a quoted string ("…", with \\" and \\\\ escapes) or bare text without a comma, of 1 to 255 printable ASCII characters',
    );
  return key;
}

function isFinal(status: number): boolean {
  return status < 500 && status !== 429 && status !== 409;
}

/** A parameter of a media type: `; name=value` or `; name="quoted value"` (RFC 9110 §5.6.6). */
const MEDIA_PARAMETER =
  /^\s*;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)|"((?:[^"\\]|\\.)*)")/;

/**
 * A Content-Type as RFC 9110 §8.3.1 compares it: type, subtype and parameter
 * names lower-case, no whitespace around `;` and `=`, a quoted value
 * unquoted, `charset`'s value lower-case, parameters in name order. `charset=utf-8`
 * is dropped: every body the gateway reads is JSON, which is UTF-8 only (RFC
 * 8259 §8.1), so it names no choice. A field that does not parse is kept as sent.
 */
function canonicalMediaType(contentType: string | undefined): string {
  if (contentType === undefined) return "";
  const semicolon = contentType.indexOf(";");
  const essence = (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  const parameters: string[] = [];
  let rest = semicolon < 0 ? "" : contentType.slice(semicolon);
  while (rest.trim() !== "") {
    const parameter = MEDIA_PARAMETER.exec(rest);
    if (parameter === null) return contentType;
    const name = (parameter[1] as string).toLowerCase();
    let value = parameter[2] ?? (parameter[3] as string).replace(/\\(.)/g, "$1");
    if (name === "charset") value = value.toLowerCase();
    if (!(name === "charset" && (value === "utf-8" || value === "utf8"))) parameters.push(`${name}=${value}`);
    rest = rest.slice(parameter[0].length);
  }
  return [essence, ...parameters.sort()].join(";");
}

function fingerprintOf(request: HttpRequest, body: Uint8Array): string {
  const hash = createHash("sha256");
  // The content type as it is read: the same body sent as `application/json` and as
  // `Application/JSON; charset=UTF-8` is the same request. No Content-Encoding: `body` is decoded. The
  // empty line was the coding's: an uncompressed request hashes as it did, so the answers stored
  // before it (in Redis, across a rolling deploy) still match their retries.
  hash.update(
    `${request.method} ${request.path}?${request.query.toString()}\n${canonicalMediaType(request.header("content-type"))}\n\n`,
  );
  // A binary-mode CloudEvent's ce-* headers (its attributes, extensions included) are part of what it asks.
  if (request.header("ce-specversion") !== undefined) {
    const names = [...request.headerNames()].filter((name) => name.startsWith("ce-")).sort();
    for (const name of names) hash.update(`${name}: ${request.header(name)}\n`);
  }
  hash.update(body);
  return hash.digest("base64url");
}
