import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import Ajv from "ajv";
import Ajv2020 from "ajv/dist/2020.js";
import { ERROR_STATUS, RECORD_ERRORS, WS_CLOSES, WS_ERRORS } from "../../src/domain/errors.ts";
import { ingestRoute } from "../../src/features/ingest/route.ts";
import { HealthState } from "../../src/features/operations/health.ts";
import { operationRoutes } from "../../src/features/operations/routes.ts";
import { createPublishModule } from "../../src/features/publish/module.ts";
import { deltaRoute } from "../../src/features/realtime/delta-route.ts";
import { Presence } from "../../src/features/realtime/presence.ts";
import { parseClientFrame } from "../../src/features/realtime/protocol.ts";
import { SseStreams } from "../../src/features/realtime/sse.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { Route } from "../../src/ports/route.ts";
import {
  asyncapi,
  at,
  CLOSE_CODES,
  deprecationProblems,
  escapePointer,
  FRAME_PAYLOADS,
  follow,
  HTTP_METHODS,
  openapi,
} from "../support/api-documents.ts";

type Node = Record<string, unknown>;

/**
 * The routes of the feature modules app.ts composes, built with stand-ins
 * (only method, path and deprecation are read; no handler runs).
 */
function routeTable(): Route[] {
  const unused = {} as never;
  return [
    ...operationRoutes(new HealthState(), createMetrics("test", "0")),
    ingestRoute(unused, unused),
    ...(createPublishModule(unused).routes ?? []),
    deltaRoute(unused),
    new SseStreams(unused, unused).route(),
    new Presence(undefined, unused).route(unused),
  ];
}

/** Every `$ref` in a document, with where it stands. */
function refs(node: unknown, pointer = ""): Array<{ ref: string; pointer: string }> {
  if (node === null || typeof node !== "object") return [];
  return Object.entries(node).flatMap(([key, child]) =>
    key === "$ref" && typeof child === "string"
      ? [{ ref: child, pointer }]
      : refs(child, `${pointer}/${escapePointer(key)}`),
  );
}

function operations(): Array<{ method: string; path: string; operation: Node; pointer: string }> {
  return Object.entries(openapi.paths as Record<string, Node>).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((key) => HTTP_METHODS.includes(key))
      .map((method) => ({
        method: method.toUpperCase(),
        path,
        operation: item[method] as Node,
        pointer: `/paths/${escapePointer(path)}/${method}`,
      })),
  );
}

/** Pointers of every schema an OpenAPI document holds: components, bodies, headers, parameters. */
function openapiSchemaPointers(): string[] {
  const pointers = Object.keys((openapi.components as Node).schemas as Node).map(
    (name) => `/components/schemas/${escapePointer(name)}`,
  );
  const visit = (node: unknown, pointer: string) => {
    if (node === null || typeof node !== "object") return;
    for (const [key, child] of Object.entries(node)) {
      const childPointer = `${pointer}/${escapePointer(key)}`;
      if (key === "schema" && !pointer.includes("/schema/")) pointers.push(childPointer);
      else if (key !== "schemas") visit(child, childPointer);
    }
  };
  visit(openapi.paths, "/paths");
  visit(openapi.components, "/components");
  return pointers;
}

/** Strict about keywords (a misspelt one is an error), quiet about the rest. */
const strictOptions = { strict: false, strictSchema: true, validateSchema: false, allErrors: true } as const;

/**
 * Adds a whole API document so its schemas compile by pointer. Its top-level
 * members are declared as keywords: ajv compiles the root too, and those are
 * the document's, not misspelt schema keywords.
 */
function withDocument<T extends Ajv | Ajv2020>(ajv: T, document: Node, id: string): T {
  for (const key of Object.keys(document)) if (!ajv.getKeyword(key)) ajv.addKeyword(key);
  ajv.addSchema(document, id);
  return ajv;
}

describe("openapi.yaml", () => {
  test("is an OpenAPI 3.1 document whose every $ref resolves", () => {
    expect(openapi.openapi).toMatch(/^3\.1\.\d+$/);
    expect((openapi.info as Node).version).toBeString();
    const broken = refs(openapi).filter(
      ({ ref }) => !ref.startsWith("#/") || at(openapi, ref.slice(1)) === undefined,
    );
    expect(broken).toEqual([]);
  });

  test("documents exactly the router's routes: HEAD wherever GET is, and a preflight on every path", () => {
    const app = readFileSync(new URL("../../src/app.ts", import.meta.url), "utf8");
    const composed = [...app.matchAll(/create(\w+)Module\(/g)].map((match) => match[1]).sort();
    // A new feature module means new routes: add them to routeTable().
    expect(composed).toEqual(["Ingest", "Operations", "Publish", "Realtime"]);
    const expected = new Set<string>();
    for (const route of routeTable()) {
      expected.add(`${route.method} ${route.path}`);
      if (route.method === "GET") expected.add(`HEAD ${route.path}`);
      expected.add(`OPTIONS ${route.path}`);
    }
    // The WebSocket upgrade is not a router route: the transport hands GETs of wsPath to the hub, and
    // the router answers the rest (a HEAD as the GET that asks for no upgrade).
    const wsPaths = [...app.matchAll(/WS_PATH = "([^"]+)"/g)].map((match) => match[1]);
    expect(wsPaths).toEqual(["/v1/ws"]);
    for (const path of wsPaths) for (const method of ["GET", "HEAD"]) expected.add(`${method} ${path}`);
    const documented = operations().map(({ method, path }) => `${method} ${path}`);
    expect(documented.sort()).toEqual([...expected].sort());
  });

  test("a route is deprecated in the document exactly when it is in the code", () => {
    expect(deprecationProblems(routeTable(), openapi)).toEqual([]);
  });

  test("the deprecation check catches a retired route the document does not mark, or marks without its headers", () => {
    const retired: Route = {
      method: "GET",
      path: "/v1/things",
      handler: () => ({ status: 200, body: "" }),
      deprecation: { since: new Date("2026-01-01"), sunset: new Date("2027-01-01"), successor: "/v2/things" },
    };
    const document = (operation: Node) => ({ paths: { "/v1/things": { get: operation, head: operation } } });
    const unmarked = { responses: { "200": { description: "ok" } } };
    expect(deprecationProblems([retired], document(unmarked)).join("\n")).toContain("not marked deprecated");
    const withoutHeaders = { deprecated: true, responses: { "200": { description: "ok" } } };
    expect(deprecationProblems([retired], document(withoutHeaders)).join("\n")).toContain(
      "does not document sunset",
    );
    const headers = {
      Deprecation: { $ref: "#/components/headers/Deprecation" },
      Sunset: { $ref: "#/components/headers/Sunset" },
      Link: { $ref: "#/components/headers/Link-Successor" },
    };
    const complete = { deprecated: true, responses: { "200": { description: "ok", headers } } };
    expect(deprecationProblems([retired], document(complete))).toEqual([]);
    expect(deprecationProblems([{ ...retired, deprecation: undefined }], document(complete))).toEqual([
      "GET /v1/things is marked deprecated, but the route has no deprecation",
      "HEAD /v1/things is marked deprecated, but the route has no deprecation",
    ]);
  });

  test("every operation is complete: unique ids, described responses, its path parameters, known security schemes", () => {
    const problems: string[] = [];
    const ids = new Set<string>();
    const schemes = Object.keys((openapi.components as Node).securitySchemes as Node);
    for (const { method, path, operation, pointer } of operations()) {
      const name = `${method} ${path}`;
      const id = operation.operationId as string | undefined;
      if (id !== undefined) {
        if (ids.has(id)) problems.push(`${name}: operationId ${id} used twice`);
        ids.add(id);
      }
      const responses = Object.keys((operation.responses as Node | undefined) ?? {});
      if (responses.length === 0) problems.push(`${name}: no responses`);
      for (const status of responses) {
        if (typeof follow(openapi, `${pointer}/responses/${status}`).node.description !== "string")
          problems.push(`${name} ${status}: no description`);
      }
      const parameters = [
        ...((((openapi.paths as Record<string, Node>)[path] as Node).parameters as Node[] | undefined) ?? []),
        ...((operation.parameters as Node[] | undefined) ?? []),
      ].map((parameter) =>
        parameter.$ref ? follow(openapi, (parameter.$ref as string).slice(1)).node : parameter,
      );
      for (const [, parameterName] of path.matchAll(/\{(\w+)\}/g)) {
        if (!parameters.some((p) => p.in === "path" && p.name === parameterName && p.required === true))
          problems.push(`${name}: path parameter ${parameterName} not documented as required`);
      }
      for (const requirement of (operation.security as Node[] | undefined) ?? []) {
        for (const scheme of Object.keys(requirement))
          if (!schemes.includes(scheme)) problems.push(`${name}: unknown security scheme ${scheme}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("every schema compiles as JSON Schema 2020-12 with no unknown keyword, and every example fits its schema", () => {
    const ajv = withDocument(new Ajv2020(strictOptions), openapi, "openapi.json");
    const problems: string[] = [];
    for (const pointer of openapiSchemaPointers()) {
      try {
        ajv.getSchema(`openapi.json#${pointer}`);
      } catch (error) {
        problems.push(`${pointer}: ${(error as Error).message}`);
      }
    }
    for (const { pointer, operation } of operations()) {
      const content = ((operation.requestBody as Node | undefined)?.content as Record<string, Node>) ?? {};
      for (const [type, media] of Object.entries(content)) {
        for (const [name, example] of Object.entries((media.examples as Record<string, Node>) ?? {})) {
          const validate = ajv.getSchema(
            `openapi.json#${pointer}/requestBody/content/${escapePointer(type)}/schema`,
          );
          if (validate && !validate(example.value))
            problems.push(`${pointer} example ${name}: ${ajv.errorsText(validate.errors)}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  test("error codes are the catalogue's, and each error response names only codes of its status", () => {
    const codes = follow(openapi, "/components/schemas/ErrorCode").node.enum as string[];
    expect([...codes].sort()).toEqual(Object.keys(ERROR_STATUS).sort());
    const recordCodes = follow(openapi, "/components/schemas/RecordErrorCode").node.enum as string[];
    expect([...recordCodes].sort()).toEqual(Object.keys(RECORD_ERRORS).sort());
    const problems: string[] = [];
    const narrowed = (schema: unknown, visit: (codes: string[]) => void): void => {
      if (schema === null || typeof schema !== "object") return;
      const node = schema as Node;
      if (typeof node.$ref === "string") {
        narrowed(follow(openapi, node.$ref.slice(1)).node, visit);
        return;
      }
      // An error body narrowed to some codes: allOf [Error, {properties: {error: {const | enum}}}].
      const parts = (node.allOf as Node[] | undefined) ?? [];
      if (parts.some((part) => part.$ref === "#/components/schemas/Error")) {
        for (const part of parts) {
          const error = (part.properties as Node | undefined)?.error as Node | undefined;
          if (error) visit(error.const !== undefined ? [error.const as string] : (error.enum as string[]));
        }
      }
      for (const key of ["allOf", "oneOf", "anyOf"])
        for (const part of (node[key] as unknown[] | undefined) ?? []) narrowed(part, visit);
    };
    let checked = 0;
    for (const { method, path, pointer, operation } of operations()) {
      for (const status of Object.keys(operation.responses as Node)) {
        const response = follow(openapi, `${pointer}/responses/${status}`).node;
        const schema = at(response, "/content/application~1json/schema");
        narrowed(schema, (named) => {
          checked++;
          for (const code of named) {
            if (String(ERROR_STATUS[code as keyof typeof ERROR_STATUS]) !== status)
              problems.push(
                `${method} ${path} ${status} names ${code}, a ${ERROR_STATUS[code as keyof typeof ERROR_STATUS]}`,
              );
          }
        });
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(problems).toEqual([]);
  });
});

describe("asyncapi.yaml", () => {
  test("is an AsyncAPI 3.0 document whose every $ref resolves, and each operation uses its channel's messages", () => {
    expect(asyncapi.asyncapi).toBe("3.0.0");
    const broken = refs(asyncapi).filter(
      ({ ref }) => !ref.startsWith("#/") || at(asyncapi, ref.slice(1)) === undefined,
    );
    expect(broken).toEqual([]);
    const problems: string[] = [];
    for (const [name, operation] of Object.entries(asyncapi.operations as Record<string, Node>)) {
      const channel = (operation.channel as Node).$ref as string;
      const messages = [
        ...((operation.messages as Node[]) ?? []),
        ...(((operation.reply as Node | undefined)?.messages as Node[]) ?? []),
      ];
      for (const message of messages)
        if (!(message.$ref as string).startsWith(`${channel}/messages/`))
          problems.push(`${name}: ${message.$ref} is not a message of ${channel}`);
    }
    expect(problems).toEqual([]);
  });

  test("payloads compile as JSON Schema draft-07 with no unknown keyword, and every example fits its payload", () => {
    const ajv = withDocument(new Ajv(strictOptions), asyncapi, "asyncapi.json");
    const problems: string[] = [];
    for (const [name, message] of Object.entries(
      (asyncapi.components as Node).messages as Record<string, Node>,
    )) {
      try {
        const validate = ajv.getSchema(`asyncapi.json#/components/messages/${name}/payload`);
        for (const example of (message.examples as Node[] | undefined) ?? [])
          if (validate && !validate(example.payload))
            problems.push(`${name} example: ${ajv.errorsText(validate.errors)}`);
      } catch (error) {
        problems.push(`${name}: ${(error as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("the client frames are the ones the gateway parses, and its examples parse", () => {
    expect([...FRAME_PAYLOADS.client.keys()].sort()).toEqual([
      "auth",
      "ping",
      "publish",
      "subscribe",
      "unsubscribe",
    ]);
    for (const pointer of FRAME_PAYLOADS.client.values()) {
      const message = at(asyncapi, pointer.replace(/\/payload$/, "")) as Node;
      const examples = (message.examples as Node[] | undefined) ?? [];
      expect(examples.length).toBeGreaterThan(0);
      for (const example of examples)
        expect(parseClientFrame(JSON.stringify(example.payload))).not.toHaveProperty("error");
    }
  });

  test("the close codes are the catalogue's (1006 is never on the wire)", () => {
    const catalogued = Object.values(WS_CLOSES)
      .map(({ code }) => String(code))
      .filter((code) => code !== "1006");
    expect(Object.keys(CLOSE_CODES).sort()).toEqual(catalogued.sort());
  });

  test("the error frame codes are the catalogue's", () => {
    const codes = at(asyncapi, "/components/messages/error/payload/properties/code/enum") as string[];
    expect([...codes].sort()).toEqual(Object.keys(WS_ERRORS).sort());
  });
});
