import { readFileSync } from "node:fs";
import Ajv from "ajv";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { ERROR_STATUS } from "../../src/domain/errors.ts";
import type { Route } from "../../src/ports/route.ts";

/**
 * The API documents (openapi.yaml, asyncapi.yaml) loaded once, and checks of
 * real responses and frames against them. Each check returns the problems it
 * found, in words, so a failing test says what the document and the gateway
 * disagree on.
 */

type Node = Record<string, unknown>;

/** The keys of an OpenAPI path item that are operations. */
export const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** The headers every response of a deprecated operation documents (RFC 9745, RFC 8594, the successor Link). */
const DEPRECATION_HEADERS = ["deprecation", "sunset", "link"];

const ROOT = new URL("../..", import.meta.url).pathname;

function load(name: string): Node {
  return Bun.YAML.parse(readFileSync(`${ROOT}${name}`, "utf8")) as Node;
}

export const openapi = load("openapi.yaml");
export const asyncapi = load("asyncapi.yaml");

/** The node at a JSON pointer (`/a/b~1c`), or undefined. */
export function at(document: Node, pointer: string): unknown {
  let node: unknown = document;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (node === null || typeof node !== "object" || !(key in node)) return undefined;
    node = (node as Node)[key];
  }
  return node;
}

export function escapePointer(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** Follows local `$ref`s from the node at `pointer` to the object they name, and its pointer. */
export function follow(document: Node, pointer: string): { node: Node; pointer: string } {
  let current = pointer;
  for (let hops = 0; hops < 10; hops++) {
    const node = at(document, current) as Node | undefined;
    if (!node || typeof node !== "object") throw new Error(`nothing at ${current}`);
    const ref = node.$ref;
    if (typeof ref !== "string") return { node, pointer: current };
    if (!ref.startsWith("#/")) throw new Error(`only local $refs are followed, not ${ref}`);
    current = ref.slice(1);
  }
  throw new Error(`$ref loop from ${pointer}`);
}

// Lenient about keywords: the documents also hold OpenAPI/AsyncAPI members the structural test checks.
const openapiAjv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(openapiAjv);
openapiAjv.addSchema(openapi, "openapi.json");
// AsyncAPI 3 payloads are AsyncAPI Schema objects: JSON Schema draft-07.
const asyncapiAjv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
addFormats(asyncapiAjv);
asyncapiAjv.addSchema(asyncapi, "asyncapi.json");

function schemaProblems(ajv: Ajv | Ajv2020, id: string, pointer: string, value: unknown, what: string) {
  const validate = ajv.getSchema(`${id}#${pointer}`);
  if (!validate) return [`${what}: no schema at ${pointer}`];
  if (validate(value)) return [];
  return [`${what} breaks ${pointer}: ${ajv.errorsText(validate.errors)}; got ${JSON.stringify(value)}`];
}

export interface RealResponse {
  status: number;
  headers: Headers;
  body: string;
}

/** Reads a fetch Response once, for `responseProblems`. */
export async function realResponse(response: Response): Promise<RealResponse> {
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/**
 * Where `response` (to `method` on the path template `path`) departs from
 * openapi.yaml: an undocumented status, a required header missing, a header
 * or a JSON body outside its schema, an undocumented content type.
 */
export function responseProblems(method: string, path: string, response: RealResponse): string[] {
  const operationPointer = `/paths/${escapePointer(path)}/${method.toLowerCase()}`;
  if (!at(openapi, operationPointer)) return [`${method} ${path} is not documented`];
  const status = String(response.status);
  const candidates = [status, `${status[0]}XX`, "default"];
  const key = candidates.find((candidate) => at(openapi, `${operationPointer}/responses/${candidate}`));
  if (!key) return [`${method} ${path} answered ${status}, which is not documented`];
  const { node: documented, pointer } = follow(openapi, `${operationPointer}/responses/${key}`);
  const what = `${method} ${path} ${status}`;
  const problems: string[] = [];

  for (const name of Object.keys((documented.headers as Node | undefined) ?? {})) {
    const header = follow(openapi, `${pointer}/headers/${escapePointer(name)}`);
    const value = response.headers.get(name);
    if (value === null) {
      if (header.node.required === true) problems.push(`${what}: required header ${name} missing`);
      continue;
    }
    if (header.node.schema)
      problems.push(...schemaProblems(openapiAjv, "openapi.json", `${header.pointer}/schema`, value, name));
  }

  const content = documented.content as Node | undefined;
  // `x-body-optional`: one status, two answers (GET /v1/ws's 426: the engine's bodiless one and the router's).
  if (response.body === "" && documented["x-body-optional"] === true) return problems;
  if (method === "HEAD" || !content) {
    if (response.body !== "") problems.push(`${what}: a body where none is documented`);
    return problems;
  }
  const contentType = response.headers.get("content-type") ?? "";
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  const documentedType =
    Object.keys(content).find((type) => type.replaceAll(" ", "") === contentType.replaceAll(" ", "")) ??
    Object.keys(content).find((type) => type === mediaType);
  if (!documentedType) return [...problems, `${what}: content type ${contentType} is not documented`];
  const schemaPointer = `${pointer}/content/${escapePointer(documentedType)}/schema`;
  if (mediaType === "application/json" || mediaType.endsWith("+json")) {
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      return [...problems, `${what}: the body is not JSON: ${response.body.slice(0, 200)}`];
    }
    problems.push(...schemaProblems(openapiAjv, "openapi.json", schemaPointer, body, `${what} body`));
  } else {
    problems.push(
      ...schemaProblems(openapiAjv, "openapi.json", schemaPointer, response.body, `${what} body`),
    );
  }
  return problems;
}

/**
 * Where the query and header values of a request (to `method` on the path
 * template `path`) fall outside the schemas openapi.yaml gives those
 * parameters: a request the gateway accepts must be one the document allows,
 * or a client generated from it could not send it.
 */
export function parameterProblems(
  method: string,
  path: string,
  request: { query?: Record<string, string>; headers?: Record<string, string> },
): string[] {
  const pathPointer = `/paths/${escapePointer(path)}`;
  const operationPointer = `${pathPointer}/${method.toLowerCase()}`;
  if (!at(openapi, operationPointer)) return [`${method} ${path} is not documented`];
  const problems: string[] = [];
  for (const listPointer of [`${pathPointer}/parameters`, `${operationPointer}/parameters`]) {
    const list = (at(openapi, listPointer) as unknown[] | undefined) ?? [];
    list.forEach((_, index) => {
      const { node, pointer } = follow(openapi, `${listPointer}/${index}`);
      const given =
        node.in === "query"
          ? request.query
          : node.in === "header"
            ? Object.fromEntries(Object.entries(request.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]))
            : undefined;
      const name = node.in === "header" ? String(node.name).toLowerCase() : String(node.name);
      const value = given?.[name];
      if (value !== undefined && node.schema)
        problems.push(
          ...schemaProblems(
            openapiAjv,
            "openapi.json",
            `${pointer}/schema`,
            value,
            `${method} ${path} ${name}`,
          ),
        );
    });
  }
  return problems;
}

/** `METHOD template status` of every response openapi.yaml documents. */
export function documentedStatuses(): string[] {
  return Object.entries(openapi.paths as Record<string, Node>).flatMap(([path, item]) =>
    HTTP_METHODS.filter((method) => item[method]).flatMap((method) =>
      Object.keys(((item[method] as Node).responses as Node | undefined) ?? {}).map(
        (status) => `${method.toUpperCase()} ${path} ${status}`,
      ),
    ),
  );
}

/**
 * Where an error answered outside the documented paths (a refused WebSocket
 * upgrade) departs from openapi.yaml's error body, or from the status its code maps to.
 */
export function errorBodyProblems(status: number, text: string): string[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return [`a ${status} whose body is not JSON: ${text.slice(0, 200)}`];
  }
  const problems = schemaProblems(
    openapiAjv,
    "openapi.json",
    "/components/schemas/Error",
    body,
    "error body",
  );
  const code = (body as { error?: string }).error as keyof typeof ERROR_STATUS;
  if (ERROR_STATUS[code] !== status)
    problems.push(`a ${status} with code ${code}, which maps to ${ERROR_STATUS[code]}`);
  return problems;
}

/** Each direction's frames, by their `type`: the payload pointer of the message documenting it. */
function framePayloads(): Record<"client" | "server", Map<string, string>> {
  const payloads = { client: new Map<string, string>(), server: new Map<string, string>() };
  const add = (direction: "client" | "server", messageRefs: unknown) => {
    for (const ref of (messageRefs as Node[] | undefined) ?? []) {
      const message = follow(asyncapi, (ref.$ref as string).slice(1));
      const type = at(message.node, "/payload/properties/type/const");
      if (typeof type !== "string") throw new Error(`${message.pointer} has no payload type const`);
      payloads[direction].set(type, `${message.pointer}/payload`);
    }
  };
  for (const operation of Object.values(asyncapi.operations as Record<string, Node>)) {
    if (operation.action === "receive") {
      add("client", operation.messages);
      add("server", (operation.reply as Node | undefined)?.messages);
    } else add("server", operation.messages);
  }
  return payloads;
}

export const FRAME_PAYLOADS = framePayloads();

/** Where a frame sent by `direction` departs from asyncapi.yaml. */
export function frameProblems(direction: "client" | "server", frame: unknown): string[] {
  const type = (frame as Node | null)?.type;
  const pointer = typeof type === "string" ? FRAME_PAYLOADS[direction].get(type) : undefined;
  if (!pointer) return [`a ${direction} frame of undocumented type: ${JSON.stringify(frame)}`];
  return schemaProblems(asyncapiAjv, "asyncapi.json", pointer, frame, `${direction} frame ${type}`);
}

/** The close codes asyncapi.yaml lists, with what each means. */
export const CLOSE_CODES = at(asyncapi, "/channels/socket/x-close-codes") as Record<string, string>;

/**
 * Where a route table and an OpenAPI document disagree on deprecation: a
 * route with a `deprecation` must be `deprecated: true` (and its HEAD too,
 * for a GET), with Deprecation, Sunset and Link documented on every
 * response; a route without one must not be marked.
 */
export function deprecationProblems(routes: Route[], document: Node): string[] {
  const problems: string[] = [];
  for (const route of routes) {
    const methods = route.method === "GET" ? ["GET", "HEAD"] : [route.method];
    for (const method of methods) {
      const name = `${method} ${route.path}`;
      const pointer = `/paths/${escapePointer(route.path)}/${method.toLowerCase()}`;
      const operation = at(document, pointer) as Node | undefined;
      if (!operation) continue;
      if (!route.deprecation) {
        if (operation.deprecated === true)
          problems.push(`${name} is marked deprecated, but the route has no deprecation`);
        continue;
      }
      if (operation.deprecated !== true)
        problems.push(`${name} has a deprecation but is not marked deprecated`);
      for (const status of Object.keys((operation.responses as Node | undefined) ?? {})) {
        const response = follow(document, `${pointer}/responses/${status}`).node;
        const documented = Object.keys((response.headers as Node | undefined) ?? {}).map((h) =>
          h.toLowerCase(),
        );
        for (const header of DEPRECATION_HEADERS)
          if (!documented.includes(header)) problems.push(`${name} ${status} does not document ${header}`);
      }
    }
  }
  return problems;
}
