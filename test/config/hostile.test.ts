import { expect, test } from "bun:test";
import fc from "fast-check";
import { ConfigError, loadConfig } from "../../src/config/config.ts";
import { controlCharacterIn } from "../../src/config/parse.ts";

/**
 * SPEC.md, Lifecycle: a bad value exits 1 with a message naming the variable. For every variable the
 * config reads (found in src/config/config.ts, not listed here), hostile values either give a config
 * whose every value is sane and, for a number, the one written within the documented range, or a
 * ConfigError naming that variable: never another exception, a NaN, a -0, a control character or a URL
 * without a host.
 */

const source = await Bun.file(new URL("../../src/config/config.ts", import.meta.url)).text();
const table = await Bun.file(new URL("../../docs/configuration.md", import.meta.url)).text();

/** Each variable read, with its parser's name as the code calls it. */
const settings = [...source.matchAll(/read\("([A-Z0-9_]+)", (\w+)/g)].map(([, name, parser]) => ({
  name: name as string,
  parser: parser as string,
}));
/** The documented range of each number: `min–max` or `≥ min`. */
const ranges = new Map<string, readonly [number, number]>(
  [...table.matchAll(/^\| `([A-Z0-9_]+)` \|[^|]+\| (\d+)–(\d+) \|/gm)]
    .map(([, name, min, max]): [string, readonly [number, number]] => [
      name as string,
      [Number(min), Number(max)],
    ])
    .concat(
      [...table.matchAll(/^\| `([A-Z0-9_]+)` \|[^|]+\| ≥ (\d+) \|/gm)].map(
        ([, name, min]): [string, readonly [number, number]] => [
          name as string,
          [Number(min), Number.MAX_SAFE_INTEGER],
        ],
      ),
    ),
);

/** Every other setting valid and consistent, so a refusal can only be about the variable under test. */
const BASE: Record<string, string> = {
  JWT_SECRET: "0123456789abcdef0123456789abcdef",
  KAFKA_BROKERS: "kafka:9092",
  KAFKA_SASL_USERNAME: "gateway",
  KAFKA_SASL_PASSWORD: "gateway-secret",
  AWS_REGION: "eu-west-1",
  // Tracing on: the other OTEL_* settings are read only then.
  OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector.example:4318",
};

/** A valid value of each kind, mutated by the generators below. */
const VALID: Record<string, string> = {
  integer: "1000",
  boolean: "true",
  oneOf: "none",
  nonEmpty: "edge-gateway",
  secret: "0123456789abcdef0123456789abcdef",
  topicName: "events-2",
  brokerList: "b-1.kafka:9092,10.0.0.7:9093",
  url: "https://collector.example:4318/otlp",
  redisUrl: "redis://user:pass@redis:6379/2",
  httpsUrlExceptLoopback: "https://idp.example/.well-known/jwks.json",
  originList: "https://app.example.com,http://localhost:3000",
  otlpHeaders: "api-key=abc%3Bdef,x-tenant=acme",
  resourceAttributes: "deployment.environment.name=prod,k8s.pod.name=gw-0",
  host: "gateway.internal",
  ratio: "0.25",
};

const HOSTILE = [
  "",
  " ",
  "\t\n",
  " 1000 ",
  "+1000",
  "-1000",
  "-0",
  "+0",
  "-00",
  "0",
  "00001024",
  "1.5",
  "1000.0",
  "1e3",
  "1E3",
  "0x10",
  "0o17",
  "0b101",
  "NaN",
  "Infinity",
  "-Infinity",
  "99999999999999999999",
  "9007199254740993",
  "1_000",
  "1,000",
  "10MB",
  "5s",
  "١٢٣", // Arabic-Indic digits
  "１２３", // fullwidth digits
  "۱۲۳",
  "\u00a01000\u00a0",
  "\ufeff1000",
  "1000\u0000",
  "10\u000000",
  "a".repeat(10_000),
  "9".repeat(400),
  "TRUE",
  "yes",
  "2",
  "null",
  "undefined",
  "a,,b",
  ",",
  ",,",
  "kafka:9092,,kafka2:9092",
  "kafka:0",
  "kafka:65536",
  "kafka",
  "PLAINTEXT://kafka:9092",
  "collector:4318",
  "//collector:4318",
  "http:collector",
  "http:///collector",
  "http:\\\\collector",
  "http://",
  "https://",
  "https://:443",
  "https://x:0",
  "http://exa\tmple.com",
  "http://example.com\n",
  "ftp://example.com",
  "file:///etc/passwd",
  "javascript:alert(1)",
  "data:text/plain,x",
  "ws://example.com",
  "redis://",
  "redis:",
  "redis:/0",
  "redis://:6379",
  "redis://h:0",
  "redis://h/x",
  "redis://exa\tmple:6379",
  "REDIS://h",
  "rediss://h:6380/15",
  "http://127.0.0.1:8080/jwks",
  "http://evil.example/jwks",
  "*",
  "*,https://a.example",
  "https://*.example.com",
  "::",
  "::1",
  "999.1.1.1",
  "1.2.3",
  "a..b",
  ".",
  "..",
  "a\u0000b",
  "a\nb",
  "a\rb",
  "a\u007fb",
  "a\u001bb",
  "\u0000",
  "\ud800",
];

/** Hostile decorations of a string: spaces, signs, units, control characters, a second copy. */
function decorated(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(
      base,
      fc.constantFrom("", " ", "\t", "+", "-", "0", "\u00a0", "\u0000", "\n", "\u3000", "١"),
      fc.constantFrom("", " ", "\t", ".0", "e3", "ms", "\u0000", "\n", ",", ",,x", "%00", "/x"),
    )
    .map(([value, before, after]) => `${before}${value}${after}`);
}

function hostileFor(kind: string, range: readonly [number, number] | undefined): fc.Arbitrary<string> {
  const numbers = range
    ? fc.oneof(
        fc.integer({ min: range[0] - 2, max: Math.min(range[0] + 2, range[1]) }),
        fc.integer({ min: Math.max(range[1] - 2, range[0]), max: range[1] + 2 }),
        fc.integer({ min: range[0], max: range[1] }),
        fc.double({ noNaN: false }),
      )
    : fc.integer();
  return fc.oneof(
    { weight: 3, arbitrary: decorated(numbers.map(String)) },
    { weight: 3, arbitrary: decorated(fc.constant(VALID[kind] ?? "x")) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constant(VALID[kind] ?? "x"), fc.nat(), fc.string({ unit: "binary", maxLength: 3 }))
        .map(([value, at, insert]) => {
          const index = at % (value.length + 1);
          return value.slice(0, index) + insert + value.slice(index);
        }),
    },
  );
}

/** Every leaf of the config, by its path. */
function leaves(value: unknown, path = ""): Array<[string, unknown]> {
  if (value !== null && typeof value === "object" && !Array.isArray(value))
    return Object.entries(value).flatMap(([key, inner]) => leaves(inner, `${path}.${key}`));
  return [[path, value]];
}

const URL_LEAVES = new Set([
  ".redisUrl",
  ".auth.jwksUrl",
  ".s3.endpoint",
  ".tracing.tracesUrl",
  ".corsOrigins",
]);

/** What is wrong with a config a hostile value was accepted into, or nothing. */
function insanities(config: unknown): string[] {
  const wrong: string[] = [];
  for (const [path, value] of leaves(config)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      // A sampling ratio is the one fraction: within [0, 1].
      if (path === ".tracing.samplerRatio") {
        if (typeof item !== "number" || !(item >= 0 && item <= 1)) wrong.push(`${path} is ${item}`);
      } else if (typeof item === "number" && (!Number.isSafeInteger(item) || Object.is(item, -0)))
        wrong.push(`${path} is ${Object.is(item, -0) ? "-0" : item}`);
      // A secret is used as given, its bytes whatever they are.
      if (typeof item === "string" && path !== ".auth.jwtSecret") {
        if (item.trim() === "") wrong.push(`${path} is blank`);
        if (controlCharacterIn(item) !== undefined) wrong.push(`${path} holds a control character`);
        if (URL_LEAVES.has(path) && item !== "*") {
          const url = URL.canParse(item) ? new URL(item) : undefined;
          if (!url || url.hostname === "") wrong.push(`${path} ${JSON.stringify(item)} has no host`);
          else if (url.port === "0" && path !== ".corsOrigins")
            wrong.push(`${path} ${JSON.stringify(item)} has port 0`);
        }
      }
    }
  }
  return wrong;
}

/** Whether an accepted number is the one written, within the documented range, in the config. */
function numberProblem(name: string, raw: string, config: unknown): string | undefined {
  const range = ranges.get(name);
  if (!range) return `${name}: no documented range in docs/configuration.md`;
  const text = raw.trim();
  if (text === "") return undefined; // blank counts as unset: the default
  // Digits, or "-0" and its like read as 0.
  if (!/^(\d+|-0+)$/.test(text)) return `${name}=${JSON.stringify(raw)} was accepted: not digits`;
  const value = Number(text) + 0;
  if (value < range[0] || value > range[1])
    return `${name}=${JSON.stringify(raw)} was accepted outside [${range[0]}, ${range[1]}]`;
  const values = leaves(config).map(([, leaf]) => leaf);
  // _SEC settings are kept in milliseconds.
  if (!values.includes(value) && !values.includes(value * 1000))
    return `${name}=${JSON.stringify(raw)} was accepted but no config value is ${value}`;
  return undefined;
}

test("the settings are found in the code, each number with its documented range", () => {
  expect(settings.length).toBeGreaterThan(80);
  const numbers = settings.filter((setting) => setting.parser === "integer");
  expect(numbers.length).toBeGreaterThan(50);
  expect(numbers.filter(({ name }) => !ranges.has(name)).map(({ name }) => name)).toEqual([]);
});

/** What is wrong with how the config took `raw` for `name`, or nothing. */
function verdict(name: string, parser: string, raw: string): string | undefined {
  const env = { ...BASE, [name]: raw };
  if (name === "AWS_DEFAULT_REGION") delete env.AWS_REGION;
  let config: unknown;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) return `threw ${String(error)}`;
    if (!error.variables.includes(name)) return `refused naming ${error.variables.join(", ")}`;
    return undefined;
  }
  const wrong = [
    // Taken as written or refused: a URL parser drops a tab or newline inside, and trimming only the ends.
    ...(name !== "JWT_SECRET" && controlCharacterIn(raw.trim()) !== undefined
      ? [`${JSON.stringify(raw)} holds a control character`]
      : []),
    ...insanities(config),
    ...(parser === "integer" ? [numberProblem(name, raw, config)] : []),
  ].filter((problem) => problem !== undefined);
  return wrong.length > 0 ? `accepted: ${wrong.join("; ")}` : undefined;
}

test("every setting, given a hostile value, is either taken within its range or refused naming it", () => {
  const failures: string[] = [];
  for (const { name, parser } of settings) {
    // Every listed value for every variable; then generated ones, from a fixed seed.
    for (const raw of HOSTILE) {
      const wrong = verdict(name, parser, raw);
      if (wrong !== undefined) failures.push(`${name}=${JSON.stringify(raw).slice(0, 80)} ${wrong}`);
    }
    const result = fc.check(
      fc.property(hostileFor(parser, ranges.get(name)), (raw) => verdict(name, parser, raw) === undefined),
      { seed: 20261206, numRuns: 60 },
    );
    if (result.failed && result.counterexample) {
      const [raw] = result.counterexample as [string];
      failures.push(`${name}=${JSON.stringify(raw).slice(0, 80)} ${verdict(name, parser, raw)}`);
    }
  }
  expect(failures).toEqual([]);
});
