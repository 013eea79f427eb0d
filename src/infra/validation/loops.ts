/**
 * Finds a schema that applies itself to the same data without end: `{"$ref":
 * "#"}`, `{"anyOf": [{"type": "string"}, {"$ref": "#"}]}`, two types whose
 * schemas `$ref` each other. ajv compiles them, and validating a record then
 * recurses until the stack overflows (a 500, and tens of milliseconds of a
 * core per record). JSON Schema leaves such schemas undefined (2020-12 core,
 * "Infinite recursion"); the registry refuses the set instead, as it refuses
 * one that does not compile, so the last good set stays in use.
 *
 * Only keywords that apply a subschema to the very data at hand can loop:
 * `properties`, `items` and the like go one level down, and a record's
 * nesting is bounded.
 */

/** Keywords whose subschema(s) apply to the same data as their schema. */
const SAME_DATA_ONE = ["not", "if", "then", "else"];
const SAME_DATA_LIST = ["allOf", "anyOf", "oneOf"];
/** draft-07's `dependencies` holds subschemas beside lists of names, which are not schemas. */
const SAME_DATA_MAP = ["dependentSchemas", "dependencies"];
const REFERENCES = ["$ref", "$dynamicRef", "$recursiveRef"];
/** Keywords whose values are data, never subschemas: not walked, so a `$ref` in a `const` means nothing. */
const DATA_KEYWORDS = new Set(["const", "enum", "default", "examples"]);

type Schema = Record<string, unknown>;

const isSchema = (value: unknown): value is Schema =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** Where a subschema sits, for the error message: its type and JSON pointer. */
interface Place {
  type: string;
  pointer: string;
}

/** Base URI of a type's schema without `$id`: ajv knows it by the type name, so `{"$ref": "other"}` reaches type `other`. */
const typeBase = (type: string) => `x-event-type:/${encodeURIComponent(type)}`;

function resolve(reference: string, base: string): string | undefined {
  try {
    return new URL(reference, base).href;
  } catch {
    return undefined; // not a URI reference this check can follow; ajv says whether it resolves
  }
}

const withoutFragment = (uri: string) => uri.replace(/#.*$/, "");
const escapePointer = (token: string) => token.replaceAll("~", "~0").replaceAll("/", "~1");

/**
 * Throws naming the type and the place of a subschema that reaches itself
 * through keywords that apply to the same data. References it cannot resolve
 * are not followed (ajv refuses those that do not resolve).
 */
export function checkNoEndlessRecursion(schemas: Record<string, object>): void {
  const byUri = new Map<string, Schema>();
  const places = new Map<Schema, Place>();
  const bases = new Map<Schema, string>();

  /** Registers every subschema by URI: its resource's base with a JSON pointer, its `$id`, its anchors. */
  const register = (node: unknown, base: string, resourcePointer: string, place: Place): void => {
    if (Array.isArray(node)) {
      for (const [index, item] of node.entries())
        register(item, base, `${resourcePointer}/${index}`, {
          type: place.type,
          pointer: `${place.pointer}/${index}`,
        });
      return;
    }
    if (!isSchema(node)) return;
    let resource = resourcePointer;
    let ownBase = base;
    if (typeof node.$id === "string") {
      const id = resolve(node.$id, base);
      if (id !== undefined) {
        if (node.$id.startsWith("#"))
          byUri.set(id, node); // draft-07: an $id of only a fragment is an anchor
        else {
          ownBase = withoutFragment(id);
          resource = "";
        }
      }
    }
    for (const anchor of [node.$anchor, node.$dynamicAnchor])
      if (typeof anchor === "string") byUri.set(`${ownBase}#${anchor}`, node);
    byUri.set(`${ownBase}#${resource}`, node);
    if (resource === "") byUri.set(ownBase, node);
    places.set(node, place);
    bases.set(node, ownBase);
    for (const [key, value] of Object.entries(node)) {
      if (DATA_KEYWORDS.has(key)) continue;
      const token = escapePointer(key);
      register(value, ownBase, `${resource}/${token}`, {
        type: place.type,
        pointer: `${place.pointer}/${token}`,
      });
    }
  };
  for (const [type, schema] of Object.entries(schemas)) {
    const base = typeBase(type);
    byUri.set(base, schema as Schema);
    register(schema, base, "", { type, pointer: "" });
  }

  const lookUp = (uri: string): Schema | undefined => {
    const found = byUri.get(uri);
    if (found !== undefined) return found;
    // A pointer spelled with percent-encoding (`#/$defs/a%20b`) names the same place.
    const hash = uri.indexOf("#");
    if (hash < 0) return undefined;
    try {
      return byUri.get(`${uri.slice(0, hash)}#${decodeURIComponent(uri.slice(hash + 1))}`);
    } catch {
      return undefined;
    }
  };

  const sameDataNext = (node: Schema): Schema[] => {
    const next: unknown[] = [];
    for (const key of SAME_DATA_ONE) next.push(node[key]);
    for (const key of SAME_DATA_LIST) if (Array.isArray(node[key])) next.push(...(node[key] as unknown[]));
    for (const key of SAME_DATA_MAP)
      if (isSchema(node[key])) next.push(...Object.values(node[key] as Schema));
    const base = bases.get(node) ?? "";
    for (const key of REFERENCES) {
      const reference = node[key];
      if (typeof reference !== "string") continue;
      const uri = resolve(reference, base);
      if (uri !== undefined) next.push(lookUp(uri));
    }
    return next.filter(isSchema);
  };

  // Depth-first search for a cycle, iterative: a schema may hold thousands of subschemas.
  const done = new Set<Schema>();
  for (const start of places.keys()) {
    if (done.has(start)) continue;
    const onPath = new Set<Schema>([start]);
    const stack: { node: Schema; next: Schema[] }[] = [{ node: start, next: sameDataNext(start) }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as { node: Schema; next: Schema[] };
      const child = top.next.pop();
      if (child === undefined) {
        onPath.delete(top.node);
        done.add(top.node);
        stack.pop();
        continue;
      }
      if (onPath.has(child)) throw endless(places.get(child), places.get(top.node));
      if (!done.has(child)) {
        onPath.add(child);
        stack.push({ node: child, next: sameDataNext(child) });
      }
    }
  }
}

function endless(target: Place | undefined, from: Place | undefined): Error {
  const at = (place: Place | undefined) => (place ? `${place.type}#${place.pointer}` : "?");
  return new Error(
    `schema for "${target?.type}" applies itself to the same data without end (${at(from)} leads back to ${at(target)}), so validating a record would never finish`,
  );
}
