import { expect, test } from "bun:test";
import { loadConfig } from "../../src/config/config.ts";
import { brokerList, host, integer, originList, topicName } from "../../src/config/parse.ts";

test("CORS_ORIGINS: * alone, or origins as browsers serialise them", () => {
  expect(originList("*")).toBe("*");
  expect(originList(" https://app.example.com, http://localhost:3000 ,https://b.example/")).toEqual([
    "https://app.example.com",
    "http://localhost:3000",
    "https://b.example",
  ]);
  for (const bad of [
    "",
    ",",
    "*, https://app.example.com",
    "app.example.com",
    "https://app.example.com/path",
    "ftp://app.example.com",
    "https://APP.example.com",
    "https://app.example.com:443",
    "https://*.example.com",
    "https://app.example.com, https://*.example.com",
    "https://*",
    "https://app-*.example.com",
  ]) {
    expect(() => originList(bad)).toThrow();
  }
});

test("CORS_ORIGINS unset means no CORS; a bad one is reported by name", () => {
  const secret = { JWT_SECRET: "0123456789abcdef0123456789abcdef" };
  expect(loadConfig(secret).corsOrigins).toBeUndefined();
  expect(() => loadConfig({ ...secret, CORS_ORIGINS: "https://a.example/x" })).toThrow(/CORS_ORIGINS/);
  expect(() => loadConfig({ ...secret, CORS_ORIGINS: "https://*.example.com" })).toThrow(
    /CORS_ORIGINS.*no wildcards/,
  );
});

test("KAFKA_BROKERS: host:port entries with a port in [1, 65535]; a scheme, port 0, an empty or malformed host or whitespace is refused", () => {
  expect(brokerList(" b-1.msk.example:9098, 10.0.0.7:9092 ,[::1]:9092,kafka_1:1,k:65535")).toEqual([
    "b-1.msk.example:9098",
    "10.0.0.7:9092",
    "[::1]:9092",
    "kafka_1:1",
    "k:65535",
  ]);
  for (const bad of [
    "",
    ",",
    "x",
    "x:",
    "x:0",
    "x:00",
    "x:65536",
    "x:99999",
    "x:123456",
    ":9092",
    "http://x:9092",
    "PLAINTEXT://x:9092",
    "x:9092/",
    "a b:9092",
    "x :9092",
    "x:\t9092",
    "x:9092\ny:9092",
    "ok:9092,x:0",
    "-:9092",
    "a..b:9092",
    ".x:9092",
    "x-:9092",
    "0x10:9092",
    "999.1.1.1:9092",
    "[::g]:9092",
  ]) {
    expect(() => brokerList(bad)).toThrow();
  }
});

test("KAFKA_BROKERS: a scheme or port 0 is reported by name", () => {
  const secret = { JWT_SECRET: "0123456789abcdef0123456789abcdef" };
  expect(() => loadConfig({ ...secret, KAFKA_BROKERS: "http://x:9092" })).toThrow(
    /KAFKA_BROKERS: expected host:port without a scheme/,
  );
  expect(() => loadConfig({ ...secret, KAFKA_BROKERS: "x:0" })).toThrow(/KAFKA_BROKERS: expected host:port/);
});

test("HOST: a host name or an IPv4/IPv6 address; something meant as an address that is none, or a name no resolver takes as one, is refused", () => {
  for (const value of ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "gateway.internal", "my_host"])
    expect(host(value)).toBe(value);
  for (const value of [
    "999.999.999.999",
    "256.0.0.1",
    "1.5",
    "10.0.0",
    ":::1",
    "[::1]",
    "a b",
    "a..b",
    "-",
    "-gateway",
    "gateway-",
    "0x10",
    "host.0x7f",
    "a".repeat(64),
  ])
    expect(() => host(value)).toThrow();
  expect(() =>
    loadConfig({ JWT_SECRET: "0123456789abcdef0123456789abcdef", HOST: "999.999.999.999" }),
  ).toThrow(/HOST: expected an IPv4 or IPv6 address/);
});

test("Kafka topic names as Kafka takes them: . and .. are refused at start, not by the broker at every write", () => {
  for (const value of ["events", "a.b_c-1", ".hidden", "x".repeat(249)]) expect(topicName(value)).toBe(value);
  for (const value of [".", "..", "a b", "x".repeat(250), "é"]) expect(() => topicName(value)).toThrow();
  expect(() => loadConfig({ JWT_SECRET: "0123456789abcdef0123456789abcdef", KAFKA_TOPIC: ".." })).toThrow(
    /KAFKA_TOPIC: not a valid Kafka topic name/,
  );
});

test("integers: whole decimal numbers only, a refused one quoted as written, even past 2^53", () => {
  const port = integer(0, 65535);
  expect(port(" 8080 ")).toBe(8080);
  for (const raw of ["1e3", "0x10", "1.5", "5s", "10MB", "+80", "１２"])
    expect(() => port(raw)).toThrow(`expected an integer in [0, 65535] (digits only, no unit), got "${raw}"`);
  expect(() => port("-1")).toThrow("expected an integer in [0, 65535], got -1");
  // Number() reads these as other numbers: 9007199254740992 and 1e+21.
  expect(() => port("9007199254740993")).toThrow("expected an integer in [0, 65535], got 9007199254740993");
  expect(() => port("1000000000000000000000")).toThrow(
    "expected an integer in [0, 65535], got 1000000000000000000000",
  );
  // Without an upper bound, the message gives none either (not Number.MAX_SAFE_INTEGER).
  expect(() => integer(1)("0")).toThrow("expected an integer of at least 1, got 0");
  expect(() => integer(1)("9007199254740993")).toThrow(
    "expected an integer of at least 1, got 9007199254740993",
  );
});

test('a number written "-0" is 0, not -0', () => {
  for (const raw of ["-0", "-00", " -0 "]) expect(Object.is(integer(0, 65535)(raw), 0)).toBe(true);
  const config = loadConfig({
    JWT_SECRET: "0123456789abcdef0123456789abcdef",
    PORT: "-0",
    TRUST_PROXY: "-0",
  });
  expect(Object.is(config.port, 0)).toBe(true);
  expect(Object.is(config.rateLimit.trustProxyHops, 0)).toBe(true);
});

test("a text setting holding a control character inside is refused naming it", () => {
  const secret = { JWT_SECRET: "0123456789abcdef0123456789abcdef" };
  // OTEL_SERVICE_NAME is read with tracing on only.
  for (const [name, raw] of [
    ["KAFKA_CLIENT_ID", "edge\u0000gateway"],
    ["AWS_REGION", "eu-west-1\nus-east-1"],
    ["LOCAL_LOG_DIR", "./data\u001b/events"],
    ["OTEL_SERVICE_NAME", "edge\u007fgateway"],
  ] as const)
    expect(() =>
      loadConfig({ ...secret, OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", [name]: raw }),
    ).toThrow(new RegExp(`${name}: must not hold a control character`));
  // Trailing newline (a value read from a file) is trimmed, as before.
  expect(loadConfig({ ...secret, AWS_REGION: "eu-west-1\n" }).s3.region).toBe("eu-west-1");
});

test("a URL setting is taken as written, with a host and a port other than 0, or refused naming it", () => {
  const secret = { JWT_SECRET: "0123456789abcdef0123456789abcdef" };
  for (const [name, raw] of [
    ["REDIS_URL", "redis://"],
    ["REDIS_URL", "redis:"],
    ["REDIS_URL", "redis:/0"],
    ["REDIS_URL", "redis://redis:0"],
    ["REDIS_URL", "redis://re\tdis:6379"],
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "http:collector:4318"],
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "http:///collector:4318"],
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "http://collec\ntor:4318"],
    ["S3_ENDPOINT", "https://minio:0"],
    ["JWKS_URL", "https:idp.example/jwks"],
  ] as const)
    expect(() => loadConfig({ ...secret, [name]: raw })).toThrow(new RegExp(`${name}: expected`));
  expect(loadConfig({ ...secret, REDIS_URL: " rediss://u:p@redis:6380/2 " }).redisUrl).toBe(
    "rediss://u:p@redis:6380/2",
  );
});
