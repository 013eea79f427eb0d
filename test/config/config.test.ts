import { describe, expect, test } from "bun:test";
import {
  ConfigError,
  DEV_JWT_SECRET,
  ignoredSettings,
  loadConfig,
  settingsForLog,
  withoutPasswords,
} from "../../src/config/config.ts";

/** A valid secret, so each test sees only the problems it provokes. */
const SECRET = { JWT_SECRET: "0123456789abcdef0123456789abcdef" };
/** An OTLP endpoint: tracing on, so the other OTEL_* variables are read. */
const COLLECTOR = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...SECRET, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("loadConfig", () => {
  test("OpenTelemetry: no traces URL unless an OTLP endpoint is set; the base one gets /v1/traces, the traces one wins", () => {
    expect(loadConfig(SECRET).tracing).toEqual({
      tracesUrl: undefined,
      protocol: "http/protobuf",
      serviceName: "edge-gateway",
      sampler: "parentbased_always_on",
      samplerRatio: 1,
      compression: "none",
      exportTimeoutMs: 10_000,
      spanLimits: {},
    });
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" };
    expect(loadConfig({ ...SECRET, ...base }).tracing.tracesUrl).toBe("http://collector:4318/v1/traces");
    const traces = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://otlp.example/traces" };
    expect(loadConfig({ ...SECRET, ...base, ...traces }).tracing.tracesUrl).toBe(
      "https://otlp.example/traces",
    );
    // A backend's key in the query stays in the query.
    expect(
      loadConfig({ ...SECRET, OTEL_EXPORTER_OTLP_ENDPOINT: "https://otlp.example/otlp/?api-key=k" }).tracing
        .tracesUrl,
    ).toBe("https://otlp.example/otlp/v1/traces?api-key=k");
    expect(problemsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }).join()).toContain(
      "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
  });

  test("OpenTelemetry: the transport, and the standard switches that turn the exporter off", () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4317" };
    // gRPC takes the base endpoint as it is: no /v1/traces.
    expect(loadConfig({ ...SECRET, ...base, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }).tracing).toEqual({
      tracesUrl: "http://collector:4317/",
      protocol: "grpc",
      serviceName: "edge-gateway",
      sampler: "parentbased_always_on",
      samplerRatio: 1,
      compression: "none",
      exportTimeoutMs: 10_000,
      spanLimits: {},
    });
    // The traces-specific protocol wins over the general one.
    const json = { OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json" };
    expect(loadConfig({ ...SECRET, ...base, ...json }).tracing).toMatchObject({
      tracesUrl: "http://collector:4317/v1/traces",
      protocol: "http/json",
    });
    expect(problemsOf({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" }).join()).toContain(
      "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    expect(loadConfig({ ...SECRET, ...base, OTEL_SDK_DISABLED: "true" }).tracing.tracesUrl).toBeUndefined();
    expect(
      loadConfig({ ...SECRET, ...base, OTEL_TRACES_EXPORTER: "none" }).tracing.tracesUrl,
    ).toBeUndefined();
    expect(problemsOf({ ...base, OTEL_TRACES_EXPORTER: "zipkin" }).join()).toContain("OTEL_TRACES_EXPORTER");
  });

  test("OpenTelemetry: a sampler or ratio the SDK would replace by sampling every trace is refused at start", () => {
    const tracing = (env: Record<string, string>) => loadConfig({ ...SECRET, ...COLLECTOR, ...env }).tracing;
    expect(tracing({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" })).toMatchObject({
      sampler: "traceidratio",
      samplerRatio: 0.25,
    });
    expect(tracing({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio" }).samplerRatio).toBe(1);
    for (const [env, variable] of [
      [{ OTEL_TRACES_SAMPLER: "traceidration" }, "OTEL_TRACES_SAMPLER"],
      [{ OTEL_TRACES_SAMPLER: "jaeger_remote" }, "OTEL_TRACES_SAMPLER"],
      [{ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "1.5" }, "OTEL_TRACES_SAMPLER_ARG"],
      [
        { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "10%" },
        "OTEL_TRACES_SAMPLER_ARG",
      ],
      [{ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "-0.1" }, "OTEL_TRACES_SAMPLER_ARG"],
      [{ OTEL_TRACES_SAMPLER_ARG: "a\nb" }, "OTEL_TRACES_SAMPLER_ARG"],
    ] as const) {
      const problems = problemsOf({ ...COLLECTOR, ...env });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toStartWith(`${variable}:`);
    }
  });

  test("OpenTelemetry: an exporter timeout, compression or header the SDK would drop silently is refused at start, naming its variable; the traces variable wins", () => {
    const tracing = (env: Record<string, string>) => loadConfig({ ...SECRET, ...COLLECTOR, ...env }).tracing;
    expect(
      tracing({ OTEL_EXPORTER_OTLP_COMPRESSION: "gzip", OTEL_EXPORTER_OTLP_TIMEOUT: "2500" }),
    ).toMatchObject({ compression: "gzip", exportTimeoutMs: 2500 });
    expect(
      tracing({
        OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: "none",
        OTEL_EXPORTER_OTLP_TIMEOUT: "2500",
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "700",
      }),
    ).toMatchObject({ compression: "none", exportTimeoutMs: 700 });
    for (const good of ["api-key=s3cr3t", " a=1 , x-b=c%3Bd%20e ,", "authorization=Bearer%20abc"])
      expect(problemsOf({ ...COLLECTOR, OTEL_EXPORTER_OTLP_HEADERS: good })).toEqual([]);
    for (const [variable, value] of [
      ["OTEL_EXPORTER_OTLP_TIMEOUT", "10s"],
      ["OTEL_EXPORTER_OTLP_TIMEOUT", "0"],
      ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-5"],
      ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3000000000"],
      ["OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"],
      ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate"],
      ["OTEL_EXPORTER_OTLP_HEADERS", "api-key"],
      ["OTEL_EXPORTER_OTLP_HEADERS", "api-key="],
      ["OTEL_EXPORTER_OTLP_HEADERS", "=s3cr3t"],
      ["OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t;x"],
      ["OTEL_EXPORTER_OTLP_HEADERS", "api-key=%zz"],
      ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad key=1"],
      ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=a%0Ab"],
    ] as const) {
      const problems = problemsOf({ ...COLLECTOR, [variable]: value });
      expect([value, problems.length]).toEqual([value, 1]);
      expect(problems[0]).toStartWith(`${variable}:`);
      // Header values are credentials: never repeated in the message, which is printed and logged.
      if (variable.endsWith("HEADERS")) expect(problems[0]).not.toContain("s3cr3t");
    }
    // The general variable is checked even when the traces one is set.
    expect(
      problemsOf({
        ...COLLECTOR,
        OTEL_EXPORTER_OTLP_TIMEOUT: "10s",
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "500",
      }),
    ).toHaveLength(1);
  });

  test("OpenTelemetry: with tracing off (no endpoint, OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none) the OTEL_* variables a platform injects everywhere are not read, and none stops the gateway", () => {
    const injected = {
      OTEL_EXPORTER_OTLP_HEADERS: "api-key",
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: "bad key=1",
      OTEL_EXPORTER_OTLP_COMPRESSION: "zstd",
      OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: "deflate",
      OTEL_EXPORTER_OTLP_TIMEOUT: "10s",
      OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "-5",
      OTEL_EXPORTER_OTLP_PROTOCOL: "thrift",
      OTEL_TRACES_SAMPLER: "jaeger_remote",
      OTEL_TRACES_SAMPLER_ARG: "10%",
      OTEL_RESOURCE_ATTRIBUTES: "a=b,oops",
      OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: "1k",
    };
    const off = loadConfig(SECRET).tracing;
    for (const env of [
      injected,
      { ...injected, OTEL_SDK_DISABLED: "maybe", OTEL_TRACES_EXPORTER: "zipkin" },
      { ...injected, ...COLLECTOR, OTEL_SDK_DISABLED: "true" },
      { ...injected, ...COLLECTOR, OTEL_TRACES_EXPORTER: "none" },
      { ...injected, OTEL_EXPORTER_OTLP_ENDPOINT: "not a url", OTEL_TRACES_EXPORTER: "none" },
    ])
      expect(loadConfig({ ...SECRET, ...env }).tracing).toEqual(off);
    // With an endpoint they are read, and every bad one is named.
    expect(
      new Set(problemsOf({ ...injected, ...COLLECTOR }).map((problem) => problem.split(":")[0])),
    ).toEqual(new Set(Object.keys(injected)));
  });

  test("OpenTelemetry: with spans exported, an OTEL_RESOURCE_ATTRIBUTES the SDK would drop whole is refused at start, naming it", () => {
    for (const good of [
      "deployment.environment.name=prod",
      " service.name = gw , k8s.pod.name=gw-0,",
      "team=a%2Cb%3Dc",
      `k=${"v".repeat(255)}`,
    ])
      expect(problemsOf({ ...COLLECTOR, OTEL_RESOURCE_ATTRIBUTES: good })).toEqual([]);
    for (const bad of [
      "deployment.environment.name=prod,no-equals-sign",
      "a=b=c",
      "=prod",
      "k=%zz",
      `k=${"v".repeat(256)}`,
    ]) {
      const problems = problemsOf({ ...COLLECTOR, OTEL_RESOURCE_ATTRIBUTES: bad });
      expect([bad, problems.length]).toEqual([bad, 1]);
      expect(problems[0]).toStartWith("OTEL_RESOURCE_ATTRIBUTES: member ");
    }
  });

  test("OpenTelemetry: with spans exported, a span limit the SDK would replace by its default (or take negative) is refused at start, naming it", () => {
    const limits = [
      "OTEL_ATTRIBUTE_COUNT_LIMIT",
      "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
      "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
      "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
      "OTEL_SPAN_EVENT_COUNT_LIMIT",
      "OTEL_SPAN_LINK_COUNT_LIMIT",
      "OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT",
      "OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT",
    ];
    // The span variable wins over the general one, as in the SDK.
    expect(
      loadConfig({
        ...SECRET,
        ...COLLECTOR,
        OTEL_ATTRIBUTE_COUNT_LIMIT: "16",
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: "256",
        OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: "32",
        OTEL_SPAN_LINK_COUNT_LIMIT: "0",
      }).tracing.spanLimits,
    ).toEqual({
      attributeCountLimit: 32,
      attributeValueLengthLimit: 256,
      eventCountLimit: undefined,
      linkCountLimit: 0,
      attributePerEventCountLimit: undefined,
      attributePerLinkCountLimit: undefined,
    });
    for (const variable of limits) {
      for (const good of ["0", "64", " 4096 "])
        expect(problemsOf({ ...COLLECTOR, [variable]: good })).toEqual([]);
      for (const bad of ["1k", "-1", "1.5", "unlimited"]) {
        const problems = problemsOf({ ...COLLECTOR, [variable]: bad });
        expect([variable, bad, problems.length]).toEqual([variable, bad, 1]);
        expect(problems[0]).toStartWith(`${variable}:`);
      }
    }
  });

  test("with only a secret, the documented defaults and the embedded sink", () => {
    const config = loadConfig(SECRET);
    expect(config.host).toBe("0.0.0.0");
    expect(config.port).toBe(8080);
    expect(config.kafka.brokers).toBeUndefined();
    expect(config.kafka.topic).toBe("events");
    expect(config.kafka.fanoutTopic).toBe("fanout");
    expect(config.kafka.saslMechanism).toBe("none");
    expect(config.maxBodyBytes).toBe(1048576);
    expect(config.drainDelayMs).toBe(5000);
    expect(config.drainTimeoutMs).toBe(25000);
    expect(config.ws.pingIntervalMs).toBe(30000);
    expect(config.workers).toBe(1);
    expect(config.auth.usingDevSecret).toBe(false);
  });

  test("auth fails closed: no JWT_SECRET or JWKS_URL is refused outside dev mode", () => {
    expect(() => loadConfig({})).toThrow(ConfigError);
    expect(problemsOf({ JWT_SECRET: "" }).join()).toContain("JWT_SECRET: required");
    expect(problemsOf({ JWT_SECRET: "x" }).join()).toContain("JWT_SECRET: must be at least 32 bytes");
    expect(problemsOf({ JWT_SECRET: "", JWKS_URL: "https://issuer.example/jwks.json" })).toEqual([]);
    expect(loadConfig({ DEV_MODE: "true" }).auth.usingDevSecret).toBe(true);
    expect(loadConfig({ ...SECRET, DEV_MODE: "true" }).auth.usingDevSecret).toBe(false);
  });

  test("the public dev secret as JWT_SECRET is refused outside dev mode: anyone can sign tokens with it", () => {
    expect(problemsOf({ JWT_SECRET: DEV_JWT_SECRET })).toEqual([
      "JWT_SECRET: is the public dev secret, which anyone can sign tokens with; set a secret of your own (DEV_MODE=true to run on it)",
    ]);
    expect(problemsOf({ JWT_SECRET: DEV_JWT_SECRET, DEV_MODE: "true" })).toEqual([]);
  });

  test("a bad URL is named without its password: problems are printed and logged", () => {
    const problems = [
      ...problemsOf({ REDIS_URL: "redis://:S3CRETPW@127.0.0.1:notaport" }),
      ...problemsOf({ JWKS_URL: "http://user:S3CRETPW@example.com/jwks" }),
    ];
    expect(problems).toHaveLength(2);
    expect(problems.join("\n")).not.toContain("S3CRETPW");
    expect(problems[0]).toStartWith("REDIS_URL:");
    expect(problems[0]).toContain("redis://:***@127.0.0.1:notaport");
    expect(problems[1]).toContain("http://user:***@example.com/jwks");
    expect(withoutPasswords('got "https://example.com/a:b@c"')).toBe('got "https://example.com/a:b@c"');
  });

  test("REDIS_URL: a path is a database index or nothing (ioredis would SELECT NaN and use database 0)", () => {
    for (const good of [
      "redis://127.0.0.1:6379",
      "redis://127.0.0.1:6379/",
      "redis://app:pw@127.0.0.1:6379/2",
      "rediss://:TOKEN@master.example.cache.amazonaws.com:6379/15",
    ])
      expect(problemsOf({ REDIS_URL: good })).toEqual([]);
    expect(loadConfig({ ...SECRET, REDIS_URL: "redis://app:pw@127.0.0.1:6379/2" }).redisUrl).toBe(
      "redis://app:pw@127.0.0.1:6379/2",
    );
    for (const bad of [
      "redis://127.0.0.1:6379/cache",
      "redis://127.0.0.1:6379/2/x",
      "redis://:S3CRETPW@h/-1",
    ]) {
      const problems = problemsOf({ REDIS_URL: bad });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toStartWith("REDIS_URL: expected redis[s]://host[:port][/db] (the db a number");
      expect(problems[0]).not.toContain("S3CRETPW");
    }
  });

  test("a URL's query is masked in every line: the lines that quote a presigned or keyed URL after the settings", () => {
    // As the schema registry and the OTLP exporter log their URLs (the settings line already hid the query).
    const line = JSON.stringify({
      source: "https://bucket.s3.amazonaws.com/schemas.json?X-Amz-Signature=SIGSECRET&X-Amz-Credential=AKIA1",
      err: { message: 'GET https://schemas.example/all.json?sig=SIGSECRET: HTTP 500 "quoted?x"' },
      url: "http://127.0.0.1:4318/v1/traces?api-key=KEYSECRET",
      msg: "OpenTelemetry: span export failing",
    });
    const masked = withoutPasswords(line);
    for (const secret of ["SIGSECRET", "AKIA1", "KEYSECRET"]) expect(masked).not.toContain(secret);
    const parsed = JSON.parse(masked);
    expect(parsed.source).toBe("https://bucket.s3.amazonaws.com/schemas.json?***");
    // Up to the next space: the colon after it goes too.
    expect(parsed.err.message).toBe('GET https://schemas.example/all.json?*** HTTP 500 "quoted?x"');
    expect(parsed.url).toBe("http://127.0.0.1:4318/v1/traces?***");
    // Already masked (the settings line): unchanged; an escaped quote ends the query, the line stays JSON.
    expect(withoutPasswords('"redis://:***@h:6379/0?***"')).toBe('"redis://:***@h:6379/0?***"');
    expect(JSON.parse(withoutPasswords(JSON.stringify({ m: 'see http://h/p?a="b" c' }))).m).toBe(
      'see http://h/p?***"b" c',
    );
    // Linear in the line's length, whatever it holds (a regex from each start would take seconds here).
    const started = performance.now();
    for (const long of ["a".repeat(200_000), `${"://".repeat(70_000)}?x`, `${"http://a ".repeat(20_000)}?x`])
      withoutPasswords(long);
    expect(performance.now() - started).toBeLessThan(500);
  });

  test("a refused Redis AUTH is logged without its arguments: ioredis's error quotes the command", () => {
    const line = JSON.stringify({
      err: { message: "WRONGPASS", command: { name: "auth", args: ["app", 'pa"ss]w,rd'] } },
      next: { command: { name: "select", args: ["2"] } },
    });
    const masked = withoutPasswords(line);
    expect(masked).not.toContain('pa\\"ss');
    expect(masked).not.toContain("w,rd");
    expect(JSON.parse(masked).err.command.args).toEqual(["***"]);
    expect(JSON.parse(masked).next.command.args).toEqual(["2"]);
  });

  test("JWKS_URL must be https, except on loopback", () => {
    for (const url of ["http://idp.example/jwks.json", "http://10.0.0.1/jwks", "http://127.example/jwks"]) {
      const problems = problemsOf({ JWKS_URL: url });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toStartWith("JWKS_URL: expected an https URL");
    }
    expect(problemsOf({ JWKS_URL: "ftp://idp.example/jwks" })[0]).toStartWith("JWKS_URL:");
    for (const url of [
      "https://idp.example/.well-known/jwks.json",
      "http://127.0.0.1:8081/jwks",
      "http://127.3.4.5/jwks",
      "http://localhost:9/jwks",
      "http://[::1]:9/jwks",
    ]) {
      expect(problemsOf({ JWKS_URL: url })).toEqual([]);
    }
  });

  test("JWT_ISSUER and JWT_AUDIENCE are checked only when set; the clock skew defaults to 5 s; the expiry warning defaults to a minute", () => {
    const unset = loadConfig(SECRET);
    expect(unset.auth.clockSkewSec).toBe(5);
    expect(loadConfig({ ...SECRET, JWT_CLOCK_SKEW_SEC: "0" }).auth.clockSkewSec).toBe(0);
    expect(problemsOf({ JWT_CLOCK_SKEW_SEC: "301" })[0]).toStartWith("JWT_CLOCK_SKEW_SEC:");
    expect(unset.auth.issuer).toBeUndefined();
    expect(unset.auth.audience).toBeUndefined();
    expect(unset.ws.tokenExpiryWarningMs).toBe(60_000);
    const set = loadConfig({
      ...SECRET,
      JWT_ISSUER: "https://idp.example/",
      JWT_AUDIENCE: "edge-gateway",
      WS_TOKEN_EXPIRY_WARNING_MS: "0",
    });
    expect(set.auth.issuer).toBe("https://idp.example/");
    expect(set.auth.audience).toBe("edge-gateway");
    expect(set.ws.tokenExpiryWarningMs).toBe(0);
    expect(problemsOf({ WS_TOKEN_EXPIRY_WARNING_MS: "-1" })[0]).toStartWith("WS_TOKEN_EXPIRY_WARNING_MS:");
  });

  test("WS_MAX_CHANNELS and WS_MAX_TENANT_CHANNELS bound distinct channels: 50,000 and 10,000 by default", () => {
    expect(loadConfig(SECRET).ws).toMatchObject({ maxChannels: 50_000, maxTenantChannels: 10_000 });
    expect(loadConfig({ ...SECRET, WS_MAX_CHANNELS: "7", WS_MAX_TENANT_CHANNELS: "3" }).ws).toMatchObject({
      maxChannels: 7,
      maxTenantChannels: 3,
    });
    expect(problemsOf({ WS_MAX_TENANT_CHANNELS: "0" })[0]).toStartWith("WS_MAX_TENANT_CHANNELS:");
  });

  test("parses brokers and SASL settings", () => {
    const config = loadConfig({
      ...SECRET,
      KAFKA_BROKERS: "b-1.example:9098, b-2.example:9098",
      KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
      KAFKA_SASL_USERNAME: "u",
      KAFKA_SASL_PASSWORD: "p",
    });
    expect(config.kafka.brokers).toEqual(["b-1.example:9098", "b-2.example:9098"]);
    expect(config.kafka.saslMechanism).toBe("scram-sha-512");
  });

  test("aws-msk-iam turns TLS on, and refuses it off: MSK serves IAM on its TLS listeners only", () => {
    const msk = {
      KAFKA_BROKERS: "b-1.msk:9098",
      KAFKA_SASL_MECHANISM: "aws-msk-iam",
      AWS_REGION: "eu-west-1",
    };
    expect(loadConfig({ ...SECRET, ...msk }).kafka.tls).toBe(true);
    expect(loadConfig({ ...SECRET, ...msk, KAFKA_TLS: "true" }).kafka.tls).toBe(true);
    // Before: accepted, and the gateway could never connect.
    expect(problemsOf({ ...msk, KAFKA_TLS: "false" })).toEqual([
      "KAFKA_SASL_MECHANISM/KAFKA_TLS: aws-msk-iam needs TLS (MSK serves IAM authentication on its TLS listeners only, ports 9098 and 9198); unset KAFKA_TLS or set it to true",
    ]);
  });

  test("Kafka credentials nothing uses are named in a warning, with why; the start goes on", () => {
    const credentials = { KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" };
    const ignored = (env: Record<string, string>) =>
      ignoredSettings(loadConfig({ ...SECRET, ...env }), "bun");
    // Before: none of these said anything, and the operator believed the gateway authenticated with them.
    expect(ignored({ ...credentials, KAFKA_BROKERS: "b:9092" })).toEqual([
      {
        variables: ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"],
        message:
          "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: ignored, KAFKA_SASL_MECHANISM is none: set it to plain, scram-sha-256 or scram-sha-512 to authenticate with them",
      },
    ]);
    expect(
      ignored({
        ...credentials,
        KAFKA_BROKERS: "b-1.msk:9098",
        KAFKA_SASL_MECHANISM: "aws-msk-iam",
        AWS_REGION: "eu-west-1",
      }),
    ).toEqual([
      {
        variables: ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"],
        message:
          "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: ignored, KAFKA_SASL_MECHANISM=aws-msk-iam signs with the AWS credentials of the environment (the pod's role), not a username and password",
      },
    ]);
    // Only the ones set are named.
    expect(ignored({ KAFKA_SASL_PASSWORD: "p" })).toEqual([
      {
        variables: ["KAFKA_SASL_PASSWORD"],
        message:
          "KAFKA_SASL_PASSWORD: ignored, KAFKA_BROKERS is unset: the embedded local log takes the events, and nothing authenticates",
      },
    ]);
    // Used: nothing to say.
    for (const mechanism of ["plain", "scram-sha-256", "scram-sha-512"])
      expect(ignored({ ...credentials, KAFKA_BROKERS: "b:9092", KAFKA_SASL_MECHANISM: mechanism })).toEqual(
        [],
      );
    expect(ignored({ KAFKA_BROKERS: "b:9092" })).toEqual([]);
    expect(ignored({})).toEqual([]);
  });

  test("HTTP_KEEP_ALIVE_SEC keeps idle connections on Bun (default 10) and is named in a warning on Node", () => {
    expect(loadConfig(SECRET).httpKeepAliveSec).toBe(10);
    expect(loadConfig({ ...SECRET, HTTP_KEEP_ALIVE_SEC: "75" }).httpKeepAliveSec).toBe(75);
    expect(problemsOf({ HTTP_KEEP_ALIVE_SEC: "256" })).toEqual([
      "HTTP_KEEP_ALIVE_SEC: expected an integer in [1, 255], got 256",
    ]);
    const ignored = (env: Record<string, string>, runtime: "bun" | "node-uws") =>
      ignoredSettings(loadConfig({ ...SECRET, ...env }), runtime);
    expect(ignored({ HTTP_KEEP_ALIVE_SEC: "75" }, "bun")).toEqual([]);
    expect(ignored({ HTTP_KEEP_ALIVE_SEC: "10" }, "node-uws")).toEqual([]);
    expect(ignored({ HTTP_KEEP_ALIVE_SEC: "75" }, "node-uws")).toEqual([
      {
        variables: ["HTTP_KEEP_ALIVE_SEC"],
        message:
          "HTTP_KEEP_ALIVE_SEC: ignored on Node, where uWebSockets.js closes idle keep-alive connections at its own fixed timeout (10 s)",
      },
    ]);
  });

  test("aws-msk-iam without a region is a configuration problem named AWS_REGION, not a crash at start", () => {
    expect(problemsOf({ KAFKA_SASL_MECHANISM: "aws-msk-iam" })).toContain(
      "AWS_REGION: required when KAFKA_SASL_MECHANISM=aws-msk-iam (AWS_DEFAULT_REGION also does)",
    );
    const config = loadConfig({
      ...SECRET,
      KAFKA_BROKERS: "b-1.msk:9098",
      KAFKA_SASL_MECHANISM: "aws-msk-iam",
      AWS_DEFAULT_REGION: "eu-west-1",
    });
    expect(config.kafka.awsRegion).toBe("eu-west-1");
  });

  test("S3: AWS's endpoint by default; an S3-compatible one is addressed path-style unless told otherwise", () => {
    expect(loadConfig(SECRET).s3).toEqual({
      endpoint: undefined,
      forcePathStyle: false,
      region: "us-east-1",
    });
    expect(
      loadConfig({ ...SECRET, S3_ENDPOINT: "http://127.0.0.1:9000", AWS_DEFAULT_REGION: "eu-west-1" }).s3,
    ).toEqual({
      endpoint: "http://127.0.0.1:9000/",
      forcePathStyle: true,
      region: "eu-west-1",
    });
    expect(
      loadConfig({ ...SECRET, S3_ENDPOINT: "https://s3.store.example", S3_FORCE_PATH_STYLE: "false" }).s3
        .forcePathStyle,
    ).toBe(false);
    expect(problemsOf({ S3_ENDPOINT: "store.example:9000" }).join()).toContain("S3_ENDPOINT: expected");
    expect(problemsOf({ S3_FORCE_PATH_STYLE: "maybe" }).join()).toContain("S3_FORCE_PATH_STYLE:");
  });

  test("every bad value is reported with its variable name", () => {
    const problems = problemsOf({
      PORT: "80a",
      KAFKA_BROKERS: "nohostport",
      KAFKA_SASL_MECHANISM: "kerberos",
      MAX_BODY_BYTES: "0",
      REDIS_URL: "http://x",
      WORKERS: "0",
    });
    for (const name of [
      "PORT",
      "KAFKA_BROKERS",
      "KAFKA_SASL_MECHANISM",
      "MAX_BODY_BYTES",
      "REDIS_URL",
      "WORKERS",
    ]) {
      expect(problems.some((problem) => problem.startsWith(`${name}:`))).toBe(true);
    }
  });

  test("a ConfigError names each variable once, for the fatal log line", () => {
    const error = new ConfigError([
      "PORT: expected an integer",
      "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: required when KAFKA_SASL_MECHANISM=plain",
      "PORT: again",
    ]);
    expect(error.variables).toEqual(["PORT", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"]);
    expect(error.message).toBe(
      "invalid configuration:\n  - PORT: expected an integer\n" +
        "  - KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: required when KAFKA_SASL_MECHANISM=plain\n  - PORT: again",
    );
  });

  test("PLAIN without credentials is refused", () => {
    expect(problemsOf({ KAFKA_SASL_MECHANISM: "plain" }).join()).toContain("KAFKA_SASL_USERNAME");
  });

  test("a SASL mechanism or TLS without KAFKA_BROKERS is refused: the embedded local log would take the events", () => {
    const sasl = {
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      KAFKA_SASL_USERNAME: "u",
      KAFKA_SASL_PASSWORD: "p",
    };
    expect(problemsOf(sasl)).toEqual([
      "KAFKA_BROKERS: required with KAFKA_SASL_MECHANISM=scram-sha-512 (unset runs the embedded local log, which reaches no Kafka)",
    ]);
    expect(problemsOf({ KAFKA_SASL_MECHANISM: "aws-msk-iam", AWS_REGION: "eu-west-1" })).toEqual([
      "KAFKA_BROKERS: required with KAFKA_SASL_MECHANISM=aws-msk-iam (unset runs the embedded local log, which reaches no Kafka)",
    ]);
    expect(problemsOf({ KAFKA_TLS: "true", KAFKA_BROKERS: " " })).toEqual([
      "KAFKA_BROKERS: required with KAFKA_TLS=true (unset runs the embedded local log, which reaches no Kafka)",
    ]);
    // A bad KAFKA_BROKERS is named for what it is, once.
    expect(problemsOf({ ...sasl, KAFKA_BROKERS: "http://b:9092" })).toEqual([
      'KAFKA_BROKERS: expected host:port without a scheme, got "http://b:9092"',
    ]);
    // Their defaults, and TLS switched off, say nothing about Kafka.
    expect(problemsOf({ KAFKA_SASL_MECHANISM: "none", KAFKA_TLS: "false" })).toEqual([]);
    expect(problemsOf({ ...sasl, KAFKA_BROKERS: "b:9092", KAFKA_TLS: "true" })).toEqual([]);
  });

  test("WS_QUEUED_MAX_BYTES: 256 MiB, or four times WS_BACKPRESSURE_BYTES when that is more; smaller than that is refused", () => {
    expect(loadConfig(SECRET).ws.queuedMaxBytes).toBe(256 * 1024 * 1024);
    const large = 128 * 1024 * 1024;
    expect(loadConfig({ ...SECRET, WS_BACKPRESSURE_BYTES: String(large) }).ws.queuedMaxBytes).toBe(4 * large);
    expect(loadConfig({ ...SECRET, WS_QUEUED_MAX_BYTES: "8388608" }).ws.queuedMaxBytes).toBe(8388608);
    const problems = problemsOf({ WS_QUEUED_MAX_BYTES: "4000000" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toStartWith(
      "WS_QUEUED_MAX_BYTES: must be at least 4 × WS_BACKPRESSURE_BYTES (4194304)",
    );
  });

  test("a short DRAIN_TIMEOUT_MS alone shortens the default delay to leave the drain 2 s, or half of it; a small MAX_BODY_BYTES is taken", () => {
    expect(loadConfig({ ...SECRET, DRAIN_TIMEOUT_MS: "3000" })).toMatchObject({
      drainDelayMs: 1500,
      drainTimeoutMs: 3000,
    });
    expect(loadConfig({ ...SECRET, DRAIN_TIMEOUT_MS: "101" })).toMatchObject({ drainDelayMs: 50 });
    expect(loadConfig({ ...SECRET, DRAIN_TIMEOUT_MS: "6000" })).toMatchObject({ drainDelayMs: 4000 });
    // The default delay and 2 s or more: the default itself (half of 8000 was taken before).
    expect(loadConfig({ ...SECRET, DRAIN_TIMEOUT_MS: "8000" })).toMatchObject({ drainDelayMs: 5000 });
    expect(loadConfig({ ...SECRET, DRAIN_TIMEOUT_MS: "7000" })).toMatchObject({ drainDelayMs: 5000 });
    expect(loadConfig({ ...SECRET, DRAIN_TIMEOUT_MS: "10000" })).toMatchObject({ drainDelayMs: 5000 });
    expect(loadConfig(SECRET)).toMatchObject({ drainDelayMs: 5000, drainTimeoutMs: 25_000 });
    expect(loadConfig({ ...SECRET, MAX_BODY_BYTES: "100" }).maxBodyBytes).toBe(100);
  });

  test("INGEST_CHANNEL_SCOPE: ingest by default, publish when set so, anything else refused naming it", () => {
    expect(loadConfig(SECRET).ingestChannelScope).toBe("ingest");
    expect(loadConfig({ ...SECRET, INGEST_CHANNEL_SCOPE: "publish" }).ingestChannelScope).toBe("publish");
    expect(problemsOf({ INGEST_CHANNEL_SCOPE: "subscribe" }).join()).toStartWith("INGEST_CHANNEL_SCOPE:");
  });

  test("drain timeout must exceed drain delay: both are named, either may be the one set wrong", () => {
    for (const env of [
      { DRAIN_DELAY_MS: "5000", DRAIN_TIMEOUT_MS: "4000" },
      // A delay longer than the default timeout: the operator set DRAIN_DELAY_MS only.
      { DRAIN_DELAY_MS: "30000" },
    ]) {
      try {
        loadConfig({ ...SECRET, ...env });
        throw new Error("accepted");
      } catch (error) {
        expect((error as ConfigError).variables).toEqual(["DRAIN_DELAY_MS", "DRAIN_TIMEOUT_MS"]);
      }
    }
  });

  test("WORKERS > 1 with PORT=0 names both", () => {
    expect(problemsOf({ WORKERS: "2", PORT: "0" })).toEqual([
      "WORKERS/PORT: more than 1 worker needs a fixed PORT, not 0",
    ]);
  });

  test("the ingest, fan-out and dead-letter topics are three topics: one name in two roles names both", () => {
    expect(problemsOf({ KAFKA_TOPIC: "fanout" })).toEqual([
      'KAFKA_TOPIC/KAFKA_FANOUT_TOPIC: must name different topics, both are "fanout"',
    ]);
    expect(problemsOf({ KAFKA_DLQ_TOPIC: "events" })).toEqual([
      'KAFKA_TOPIC/KAFKA_DLQ_TOPIC: must name different topics, both are "events"',
    ]);
    expect(problemsOf({ KAFKA_FANOUT_TOPIC: " rejected ", KAFKA_DLQ_TOPIC: "rejected" })).toEqual([
      'KAFKA_FANOUT_TOPIC/KAFKA_DLQ_TOPIC: must name different topics, both are "rejected"',
    ]);
    expect(problemsOf({ KAFKA_TOPIC: "in", KAFKA_FANOUT_TOPIC: "out", KAFKA_DLQ_TOPIC: "dead" })).toEqual([]);
  });

  test("the verified-token cache is bounded in bytes, 32 MiB by default, at least 64 KiB", () => {
    expect(loadConfig(SECRET).auth.tokenCacheBytes).toBe(32 * 1024 * 1024);
    expect(loadConfig({ ...SECRET, AUTH_TOKEN_CACHE_BYTES: "1048576" }).auth.tokenCacheBytes).toBe(1048576);
    expect(problemsOf({ AUTH_TOKEN_CACHE_BYTES: "1024" })).toEqual([
      "AUTH_TOKEN_CACHE_BYTES: expected an integer of at least 65536, got 1024",
    ]);
    expect(problemsOf({ AUTH_TOKEN_CACHE_BYTES: "32MiB" })).toEqual([
      'AUTH_TOKEN_CACHE_BYTES: expected an integer of at least 65536 (digits only, no unit), got "32MiB"',
    ]);
  });

  test("replays from the fan-out topic: at least one at a time, or every resume past memory would be try_again", () => {
    for (const name of ["REPLAY_MAX_CONCURRENT", "REPLAY_MAX_CONCURRENT_PER_TENANT"])
      expect(problemsOf({ [name]: "0" })).toEqual([`${name}: expected an integer in [1, 10000], got 0`]);
    expect(
      loadConfig({ ...SECRET, REPLAY_MAX_CONCURRENT: "1", REPLAY_MAX_CONCURRENT_PER_TENANT: "1" }).replay,
    ).toMatchObject({ maxConcurrent: 1, maxConcurrentPerTenant: 1 });
  });

  test("the producer queue holds one full request, or that request would be 503 overloaded forever", () => {
    expect(problemsOf({ KAFKA_QUEUE_MAX_RECORDS: "5000" })).toEqual([
      "KAFKA_QUEUE_MAX_RECORDS/MAX_RECORDS_PER_REQUEST: the queue must hold one full request, but KAFKA_QUEUE_MAX_RECORDS (5000) gives a topic 4500 records (9/10 of it), fewer than MAX_RECORDS_PER_REQUEST (10000)",
    ]);
    expect(problemsOf({ KAFKA_QUEUE_MAX_RECORDS: "5000", MAX_RECORDS_PER_REQUEST: "4500" })).toEqual([]);
    expect(problemsOf({ KAFKA_QUEUE_MAX_BYTES: "1048576" })).toEqual([
      "KAFKA_QUEUE_MAX_BYTES/MAX_BODY_BYTES: the queue must hold one full request, but KAFKA_QUEUE_MAX_BYTES (1048576) gives a topic 943718 bytes (9/10 of it), fewer than MAX_BODY_BYTES (1048576)",
    ]);
    expect(
      problemsOf({
        KAFKA_QUEUE_MAX_BYTES: String(4 * 1024 * 1024),
        PUBLISH_MAX_BYTES: String(8 * 1024 * 1024),
      }),
    ).toEqual([
      "KAFKA_QUEUE_MAX_BYTES/PUBLISH_MAX_BYTES: the queue must hold one full request, but KAFKA_QUEUE_MAX_BYTES (4194304) gives a topic 3774873 bytes (9/10 of it), fewer than PUBLISH_MAX_BYTES (8388608)",
    ]);
    // The largest body the defaults allow still fits the default queue.
    expect(problemsOf({ MAX_BODY_BYTES: String(64 * 1024 * 1024) })).toEqual([]);
  });

  test("the bodies received at once hold one full body, or that body would be 503 overloaded forever", () => {
    expect(problemsOf({ REQUEST_BODIES_MAX_BYTES: "1048575" })).toEqual([
      "REQUEST_BODIES_MAX_BYTES/MAX_BODY_BYTES: the bodies being received at once must hold one full body, but REQUEST_BODIES_MAX_BYTES (1048575) is less than MAX_BODY_BYTES (1048576)",
    ]);
    expect(problemsOf({ REQUEST_BODIES_MAX_BYTES: "1048576" })).toEqual([]);
  });

  test("WORKERS > 1 with METRICS_PORT=0 names both: each worker would pick a /metrics port of its own", () => {
    expect(problemsOf({ WORKERS: "2", PORT: "8080", METRICS_PORT: "0" })).toEqual([
      "WORKERS/METRICS_PORT: more than 1 worker needs a fixed METRICS_PORT, not 0",
    ]);
    expect(problemsOf({ WORKERS: "2", METRICS_PORT: "9464" })).toEqual([]);
  });

  test("a JWKS_URL refused is the one problem named: JWT_SECRET is not said to be missing too", () => {
    expect(problemsOf({ JWT_SECRET: "", JWKS_URL: "http://idp.example/jwks.json" })).toEqual([
      'JWKS_URL: expected an https URL (http only on loopback), got "http://idp.example/jwks.json"',
    ]);
  });
});

describe("METRICS_PORT and KAFKA_AFFECTS_HEALTH", () => {
  test("unset: /metrics stays on PORT and Kafka affects /health", () => {
    const config = loadConfig(SECRET);
    expect(config.metricsPort).toBeUndefined();
    expect(config.kafka.affectsHealth).toBe(true);
  });

  test("a port of its own, 0 for a free one; PORT itself is refused", () => {
    expect(loadConfig({ ...SECRET, METRICS_PORT: "9464" }).metricsPort).toBe(9464);
    expect(loadConfig({ ...SECRET, METRICS_PORT: "0" }).metricsPort).toBe(0);
    expect(problemsOf({ PORT: "9000", METRICS_PORT: "9000" })).toEqual([
      "METRICS_PORT: must differ from PORT (unset serves /metrics on PORT)",
    ]);
    expect(problemsOf({ METRICS_PORT: "70000" })[0]).toStartWith("METRICS_PORT:");
  });

  test("KAFKA_AFFECTS_HEALTH=false", () => {
    expect(loadConfig({ ...SECRET, KAFKA_AFFECTS_HEALTH: "false" }).kafka.affectsHealth).toBe(false);
    expect(problemsOf({ KAFKA_AFFECTS_HEALTH: "maybe" })[0]).toStartWith("KAFKA_AFFECTS_HEALTH:");
  });
});

describe("settingsForLog", () => {
  test("the settings logged at start say which secrets are set, never their values", () => {
    const secrets = [
      "jwt-secret-0123456789-0123456789-0123",
      "sasl-pass",
      "redis-token",
      "schemas-key",
      "otlp-key",
      "redis-query-pass",
      "presigned-signature",
    ];
    const config = loadConfig({
      JWT_SECRET: secrets[0],
      KAFKA_BROKERS: "b1:9092",
      KAFKA_SASL_MECHANISM: "plain",
      KAFKA_SASL_USERNAME: "gateway",
      KAFKA_SASL_PASSWORD: secrets[1],
      REDIS_URL: `rediss://:${secrets[2]}@redis.example:6379/0?password=${secrets[5]}`,
      TENANT_QUOTAS: `https://quotas.example/q.json?X-Amz-Signature=${secrets[6]}`,
      SCHEMAS: `https://reader:${secrets[3]}@schemas.example/all.json`,
      OTEL_EXPORTER_OTLP_ENDPOINT: `https://user:${secrets[4]}@otlp.example`,
    });
    // As main.ts writes it: every line goes through withoutPasswords.
    const line = withoutPasswords(JSON.stringify(settingsForLog(config)));
    for (const secret of secrets) expect(line).not.toContain(secret);
    const logged = JSON.parse(line) as typeof config;
    expect(logged.auth.jwtSecret).toBe("***");
    expect(logged.kafka.saslPassword).toBe("***");
    expect(logged.kafka.saslUsername).toBe("gateway");
    expect(logged.redisUrl).toBe("rediss://:***@redis.example:6379/0?***");
    expect(logged.rateLimit.tenantQuotas).toBe("https://quotas.example/q.json?***");
    expect(logged.drainTimeoutMs).toBe(config.drainTimeoutMs);
  });
});
