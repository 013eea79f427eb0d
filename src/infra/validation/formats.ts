import type Ajv from "ajv";
import addFormats from "ajv-formats";

/**
 * The URI formats are written with `%` among the characters of a part and a
 * separate check that each `%` starts an escape (`%20`): `[c%]*` and no bad
 * `%` anywhere for ajv-formats' `(?:[c]|%XX)*`, the same strings, as the
 * parts that take no escape (scheme, port, IP literal) take no `%` either.
 * JavaScriptCore (Bun) gives up on a group repeated tens of thousands of
 * times and answers "no match": a valid 200 KB `data:` URI failed `uri`
 * after 600 ms on Bun, and passed on Node at once. A character class runs
 * through any length on both.
 */
const BAD_PERCENT = /%(?![0-9a-f]{2})/i;
const escapesWellFormed = (text: string) => !text.includes("%") || !BAD_PERCENT.test(text);
/** `(?:[chars]|%XX)*`, given escapesWellFormed. */
const anyOf = (chars: string) => `[${chars}%]*`;
/** One of `chars` or a percent-escape, given escapesWellFormed. */
const unit = (chars: string) => `[${chars}%]`;

const UNRESERVED_SUB_DELIMS = "a-z0-9\\-._~!$&'()*+,;=";
/** ajv-formats' `uri-reference` also takes `"` in the host, the path, the query and the fragment. */
const WITH_QUOTE = "a-z0-9\\-._~!$&'\"()*+,;=";
/** An IP literal (`[::1]`, `[v1.x]`) or an IPv4 address, as ajv-formats writes them (fixed repetitions only). */
const IP_HOST = String.raw`\[(?:(?:(?:(?:[0-9a-f]{1,4}:){6}|::(?:[0-9a-f]{1,4}:){5}|(?:[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}:){4}|(?:(?:[0-9a-f]{1,4}:){0,1}[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}:){3}|(?:(?:[0-9a-f]{1,4}:){0,2}[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}:){2}|(?:(?:[0-9a-f]{1,4}:){0,3}[0-9a-f]{1,4})?::[0-9a-f]{1,4}:|(?:(?:[0-9a-f]{1,4}:){0,4}[0-9a-f]{1,4})?::)(?:[0-9a-f]{1,4}:[0-9a-f]{1,4}|(?:(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(?:25[0-5]|2[0-4]\d|[01]?\d\d?))|(?:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4})?::[0-9a-f]{1,4}|(?:(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})?::)|[Vv][0-9a-f]+\.[a-z0-9\-._~!$&'()*+,;=:]+)\]|(?:(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(?:25[0-5]|2[0-4]\d|[01]?\d\d?)`;

/**
 * ajv-formats' `uri` or `uri-reference` pattern, unrolled: `(/segment)*` is
 * `/` and then any path characters with `/` among them, and a first segment
 * of at least one character then `(/segment)*` is one character then any
 * path characters: the same strings, each read in one way only.
 */
function uriPattern(reference: boolean): RegExp {
  const host = reference ? WITH_QUOTE : UNRESERVED_SUB_DELIMS;
  const pchar = `${host}:@`;
  const path = `${pchar}\\/`;
  const query = `${pchar}\\/?`;
  const hierPart =
    `(?:\\/?\\/(?:${anyOf(`${UNRESERVED_SUB_DELIMS}:`)}@)?(?:${IP_HOST}|${anyOf(host)})(?::\\d*)?(?:\\/${anyOf(path)})?` +
    `|\\/(?:${unit(pchar)}${anyOf(path)})?` +
    `|${unit(pchar)}${anyOf(path)})`;
  return new RegExp(
    `^(?:[a-z][a-z0-9+\\-.]*:)${reference ? "?" : ""}${hierPart}${reference ? "?" : ""}` +
      `(?:\\?${anyOf(query)})?(?:#${anyOf(query)})?$`,
    "i",
  );
}

const FULL_URI = uriPattern(false);
const URI_REFERENCE = uriPattern(true);

/**
 * The usual absolute URL: `scheme://host[:port]` then path, query and
 * fragment of unreserved, sub-delim and percent-encoded characters, no
 * userinfo, no IP literal. Every string it takes is also a `uri` for
 * ajv-formats (the same character classes, a subset of its alternatives),
 * which costs ~220 ns per string on both runtimes against ~55 ns for this
 * one: on a page_view batch the full `uri` was 6–14% of the gateway's CPU.
 */
const COMMON_URL = new RegExp(
  `^[a-z][a-z0-9+\\-.]*:\\/\\/[${UNRESERVED_SUB_DELIMS}]*(?::\\d*)?(?:\\/${anyOf(`${UNRESERVED_SUB_DELIMS}:@\\/`)})?` +
    `(?:\\?${anyOf(`${UNRESERVED_SUB_DELIMS}:@\\/?`)})?(?:#${anyOf(`${UNRESERVED_SUB_DELIMS}:@\\/?`)})?$`,
  "i",
);

export const isCommonUrl = (text: string): boolean => escapesWellFormed(text) && COMMON_URL.test(text);

/** A URI fragment alone (`#x`) is no URI: ajv-formats asks for a `/` or a `:` first. */
const NOT_URI_FRAGMENT = /\/|:/;

/** ajv-formats' `uri`, answered by the common-URL pattern first: the same answer for every string. */
export function uri(text: string): boolean {
  if (!escapesWellFormed(text)) return false;
  return COMMON_URL.test(text) || (NOT_URI_FRAGMENT.test(text) && FULL_URI.test(text));
}

/** ajv-formats' `uri-reference`: the same answer for every string. */
export function uriReference(text: string): boolean {
  return escapesWellFormed(text) && URI_REFERENCE.test(text);
}

/** `~` only as `~0` or `~1`, the escapes of a JSON pointer: checked apart for the reason `%` is. */
const BAD_TILDE = /~(?![01])/;
const tildesWellFormed = (text: string) => !text.includes("~") || !BAD_TILDE.test(text);

/** ajv-formats' `json-pointer`: empty, or `/` then anything, `~` only in `~0` or `~1`. */
export function jsonPointer(text: string): boolean {
  return (text === "" || text.startsWith("/")) && tildesWellFormed(text);
}

const POINTER_FRAGMENT = /^#(?:\/[a-z0-9_\-.!$&'()*+,;:=@~%/]*)?$/i;

/** ajv-formats' `json-pointer-uri-fragment`: `#`, then a pointer of URI fragment characters. */
export function jsonPointerUriFragment(text: string): boolean {
  return escapesWellFormed(text) && tildesWellFormed(text) && POINTER_FRAGMENT.test(text);
}

const UP_LEVELS = /^(?:0|[1-9][0-9]*)/;

/** ajv-formats' `relative-json-pointer`: a count of levels up, then `#` or a JSON pointer. */
export function relativeJsonPointer(text: string): boolean {
  const levels = UP_LEVELS.exec(text)?.[0];
  if (levels === undefined) return false;
  const rest = text.slice(levels.length);
  return rest === "#" || jsonPointer(rest);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: a literal is anything but controls, space and these
const TEMPLATE_LITERALS = /^[^\x00-\x20"'<>\\^`{|}]*$/;
const EXPRESSION = /\{([^}]*)\}/;
const OPERATOR = /^[+#./;?&=,!@|]/;
const VARSPEC = /^[a-z0-9_%]+(?::[1-9][0-9]{0,3}|\*)?$/i;

/**
 * ajv-formats' `uri-template`: literals and `{…}` expressions, each an
 * optional operator and variables separated by `,`, judged piece by piece.
 */
export function uriTemplate(text: string): boolean {
  if (!escapesWellFormed(text)) return false;
  // Split on the expressions: literals at even places, expression bodies at odd ones.
  const pieces = text.split(EXPRESSION);
  for (let index = 0; index < pieces.length; index++) {
    const piece = pieces[index] as string;
    if (index % 2 === 0) {
      if (!TEMPLATE_LITERALS.test(piece)) return false;
      continue;
    }
    // A variable starts with none of the operators, so a first one is the operator.
    const variables = OPERATOR.test(piece) ? piece.slice(1) : piece;
    if (!variables.split(",").every((variable) => VARSPEC.test(variable))) return false;
  }
  return true;
}

/** ajv-formats' formats (full mode), those of URIs and JSON pointers answered as above. */
export function addSchemaFormats(ajv: Ajv): void {
  addFormats.default(ajv);
  ajv.addFormat("uri", uri);
  ajv.addFormat("uri-reference", uriReference);
  ajv.addFormat("uri-template", uriTemplate);
  ajv.addFormat("json-pointer", jsonPointer);
  ajv.addFormat("json-pointer-uri-fragment", jsonPointerUriFragment);
  ajv.addFormat("relative-json-pointer", relativeJsonPointer);
}
