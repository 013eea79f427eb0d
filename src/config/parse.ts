import { isIP } from "node:net";

/**
 * Parsers for environment values. Each returns the parsed value or throws a
 * plain Error whose message says what was expected; the config loader adds the
 * variable name so the operator sees exactly which setting is wrong.
 */

export function integer(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `in [${min}, ${max}]`;
  return (raw: string): number => {
    const text = raw.trim();
    if (!/^-?\d+$/.test(text))
      throw new Error(`expected an integer ${range} (digits only, no unit), got "${raw}"`);
    // + 0: "-0" is the number 0, not -0 (which `Object.is` and 1 / x tell apart from 0).
    const value = Number(text) + 0;
    // Quoted as written: past 2^53 the parsed number is another one (9007199254740993 reads as …992, 10^21 as 1e+21).
    if (value < min || value > max) throw new Error(`expected an integer ${range}, got ${text}`);
    return value;
  };
}

export function oneOf<T extends string>(choices: readonly T[]) {
  return (raw: string): T => {
    const value = raw.trim().toLowerCase() as T;
    if (!choices.includes(value)) throw new Error(`expected one of ${choices.join(", ")}, got "${raw}"`);
    return value;
  };
}

export function boolean(raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off"].includes(value)) return false;
  throw new Error(`expected true or false, got "${raw}"`);
}

/** The first control character (C0 or DEL) in a value, as U+XXXX: a paste or templating slip, never meant. */
export function controlCharacterIn(value: string): string | undefined {
  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  }
  return undefined;
}

export function nonEmpty(raw: string): string {
  const value = raw.trim();
  if (value === "") throw new Error("must not be empty");
  const control = controlCharacterIn(value);
  if (control !== undefined)
    throw new Error(`must not hold a control character, got ${control} in ${JSON.stringify(value)}`);
  return value;
}

/** A shared secret used as given (no trimming), at least `minBytes` long in UTF-8. */
export function secret(minBytes: number) {
  return (raw: string): string => {
    const bytes = new TextEncoder().encode(raw).byteLength;
    if (bytes < minBytes) throw new Error(`must be at least ${minBytes} bytes, got ${bytes}`);
    return raw;
  };
}

/** A number in [0, 1] (a sampling ratio), as decimal digits. */
export function ratio(raw: string): number {
  const text = raw.trim();
  const value = Number(text);
  if (!/^(?:\d+\.?\d*|\.\d+)$/.test(text) || value > 1)
    throw new Error(`expected a number in [0, 1], got "${raw}"`);
  return value;
}

/** An HTTP field name (RFC 9110 §5.1): a token. */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A field value the exporter can send: visible ASCII, spaces and tabs inside (RFC 9110 §5.5). */
const FIELD_VALUE = /^[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?$/;

/**
 * OTEL_EXPORTER_OTLP_HEADERS: `key=value,…`, each key and value
 * percent-decoded (the OpenTelemetry exporter specification: W3C Baggage
 * without its `;` properties). The SDK drops a member it cannot read without
 * a word (no `=`, an empty key or value, a bad `%` escape) and cuts a value at
 * a `;`, so an API key would silently not be sent: refused here instead. The
 * message names the member by position only: these values are credentials.
 */
export function otlpHeaders(raw: string): string {
  const members = raw.split(",");
  members.forEach((member, index) => {
    if (member.trim() === "") return;
    const at = `member ${index + 1}`;
    const equals = member.indexOf("=");
    if (equals < 0) throw new Error(`${at} is not key=value (comma-separated, values percent-encoded)`);
    if (member.includes(";"))
      throw new Error(`${at} holds a ";", which the exporter cuts the value at: percent-encode it as %3B`);
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(member.slice(0, equals).trim());
      value = decodeURIComponent(member.slice(equals + 1).trim());
    } catch {
      throw new Error(`${at} holds a "%" that is no percent-encoded UTF-8`);
    }
    if (!FIELD_NAME.test(key)) throw new Error(`${at}'s key is no HTTP header name`);
    if (!FIELD_VALUE.test(value))
      throw new Error(`${at}'s value is empty or holds a character an HTTP header cannot carry`);
  });
  return raw;
}

/** The OpenTelemetry SDK's longest resource attribute key or value, in characters. */
const MAX_RESOURCE_ATTRIBUTE_LENGTH = 255;

/**
 * OTEL_RESOURCE_ATTRIBUTES: `key=value,…`, each key and value percent-decoded
 * (`,` and `=` inside them percent-encoded), at most 255 characters each: the
 * OpenTelemetry SDK's rules. The SDK drops the whole value when one member
 * breaks them and tells only its debug channel, so every attribute (a
 * `deployment.environment.name`, a `service.name`) would silently be missing
 * from the spans: refused here instead, naming the member by position.
 */
export function resourceAttributes(raw: string): string {
  const control = controlCharacterIn(raw.trim());
  if (control !== undefined) throw new Error(`must not hold a control character, got ${control}`);
  raw.split(",").forEach((member, index) => {
    if (member.trim() === "") return;
    const at = `member ${index + 1}`;
    const parts = member.split("=");
    if (parts.length !== 2)
      throw new Error(`${at} is not key=value (comma-separated; a "," or "=" inside percent-encoded)`);
    const [key, value] = parts.map((part) => part.trim()) as [string, string];
    if (key === "") throw new Error(`${at} has an empty key`);
    let decoded: string[];
    try {
      decoded = [decodeURIComponent(key), decodeURIComponent(value)];
    } catch {
      throw new Error(`${at} holds a "%" that is no percent-encoded UTF-8`);
    }
    if (decoded.some((part) => part.length > MAX_RESOURCE_ATTRIBUTE_LENGTH))
      throw new Error(`${at} has a key or value longer than ${MAX_RESOURCE_ATTRIBUTE_LENGTH} characters`);
  });
  return raw;
}

/** Kafka's rule for topic names (`Topic.validate`): its characters, at most 249, and neither `.` nor `..`. */
export function topicName(raw: string): string {
  const value = raw.trim();
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(value) || value === "." || value === "..")
    throw new Error(`not a valid Kafka topic name: "${raw}"`);
  return value;
}

/**
 * A comma-separated list of Kafka bootstrap brokers, each `host:port`: a host
 * name or IPv4 address, or an IPv6 address in brackets, and a port in
 * [1, 65535]. No scheme (the client speaks Kafka, not a URL), no whitespace
 * inside an entry: a typo is refused at start, not retried as an outage.
 */
export function brokerList(raw: string): string[] {
  const brokers = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (brokers.length === 0) throw new Error("expected a comma-separated list of host:port");
  for (const broker of brokers) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(broker))
      throw new Error(`expected host:port without a scheme, got "${broker}"`);
    const match = /^([a-zA-Z0-9._-]+|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(broker);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535)
      throw new Error(`expected host:port with a port in [1, 65535], got "${broker}"`);
    const name = match[1] as string;
    const address = name.startsWith("[") ? name.slice(1, -1) : name;
    if (/^[\d.]+$/.test(address) || address.includes(":") ? isIP(address) === 0 : !isHostName(address))
      throw new Error(`expected host:port with a host name, IPv4 or [IPv6] address, got "${broker}"`);
  }
  return brokers;
}

export function url(protocols: readonly string[]) {
  return (raw: string): string => {
    const text = raw.trim();
    // A URL parser drops a tab or newline inside ("http://exa<TAB>mple" is http://example), and reads
    // "http:host" or "http:///host" as http://host: taken as written, or refused.
    const control = controlCharacterIn(text);
    if (control !== undefined) throw new Error(`expected a URL, got ${control} in ${JSON.stringify(raw)}`);
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      throw new Error(`expected a URL, got "${raw}"`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new Error(`expected a ${protocols.join(" or ")} URL, got "${raw}"`);
    }
    // Non-special schemes (redis:) parse without a host, and a client then connects to localhost.
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/\\]/i.test(text) || parsed.hostname === "")
      throw new Error(`expected scheme://host[:port]…, got "${raw}"`);
    if (parsed.port === "0") throw new Error(`expected a port in [1, 65535], got "${raw}"`);
    return parsed.toString();
  };
}

/**
 * A Redis URL, `redis[s]://[user:password@]host[:port][/db]`, its path a database index or nothing:
 * ioredis takes any other path for one, sends `SELECT NaN` (refused, an unhandled rejection per
 * connection) and stays on database 0, where the gateway's keys would then mix with whatever lives there.
 */
export function redisUrl(raw: string): string {
  const value = url(["redis:", "rediss:"])(raw);
  const { pathname } = new URL(value);
  if (pathname !== "" && pathname !== "/" && !/^\/\d+$/.test(pathname))
    throw new Error(
      `expected redis[s]://host[:port][/db] (the db a number, credentials before the host), got "${raw}"`,
    );
  return value;
}

/** Whether a URL's host is this machine: `localhost`, 127.0.0.0/8 or ::1. */
function isLoopbackHost(hostname: string): boolean {
  return (
    hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

/** An https URL, or http on loopback (a local identity provider or a test's). */
export function httpsUrlExceptLoopback(raw: string): string {
  const value = url(["https:", "http:"])(raw);
  const parsed = new URL(value);
  if (parsed.protocol === "http:" && !isLoopbackHost(parsed.hostname))
    throw new Error(`expected an https URL (http only on loopback), got "${raw}"`);
  return value;
}

/** `*`, or a comma-separated list of browser origins (`scheme://host[:port]`, no path). */
export function originList(raw: string): "*" | string[] {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (entries.length === 1 && entries[0] === "*") return "*";
  if (entries.length === 0 || entries.includes("*"))
    throw new Error("expected * alone or a comma-separated list of origins like https://app.example.com");
  return entries.map((entry) => {
    // A URL parser takes "https://*.example.com" as a host name, but a browser sends its exact origin: it would never match.
    if (entry.includes("*"))
      throw new Error(
        `"${entry}": origins are matched exactly, no wildcards (* alone allows every origin); list each origin`,
      );
    const parsed = URL.canParse(entry) ? new URL(entry) : undefined;
    // Browsers send the origin serialised: lower-case scheme and host, no default port, no path.
    if (
      !parsed ||
      !["http:", "https:"].includes(parsed.protocol) ||
      parsed.origin !== entry.replace(/\/$/, "")
    )
      throw new Error(`expected an origin like https://app.example.com, got "${entry}"`);
    return parsed.origin;
  });
}

/**
 * A host name, IPv4 or IPv6 address. Digits and dots only are meant as IPv4, anything with a colon as
 * IPv6: either must be a real address, or the mistake (999.1.1.1) would surface only at listen, unnamed.
 */
export function host(raw: string): string {
  const value = raw.trim();
  if (/^[\d.]+$/.test(value) || value.includes(":")) {
    if (isIP(value) === 0) throw new Error(`expected an IPv4 or IPv6 address, got "${raw}"`);
    return value;
  }
  if (!isHostName(value)) throw new Error(`expected a host name or address, got "${raw}"`);
  return value;
}

const HOST_LABEL = /^[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$/;

/**
 * Dot-separated labels of letters, digits, `_` and inner `-` (RFC 1123, with the `_` that container
 * names use), 253 characters at most. A last label that reads as a number (`0x10`, `010`) is
 * refused: the resolver takes such a name as an IPv4 address (0x10 is 0.0.0.16), not a name.
 */
function isHostName(value: string): boolean {
  const labels = value.split(".");
  const last = labels[labels.length - 1] as string;
  return (
    value.length <= 253 &&
    labels.every((label) => HOST_LABEL.test(label)) &&
    !/^(?:\d+|0x[0-9a-f]*)$/i.test(last)
  );
}
