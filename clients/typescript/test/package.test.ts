import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generate } from "../scripts/generate-types.js";
import { PROTOCOL_VERSION } from "../src/index.js";

const PACKAGE = new URL("..", import.meta.url).pathname;
const ROOT = new URL("../../..", import.meta.url).pathname;
/** Minified and gzipped, the whole browser bundle (EventClient, Subscriber, storage) stays under this. */
const SIZE_BUDGET_BYTES = 10.5 * 1024;

function run(command: string[], cwd = PACKAGE) {
  const result = Bun.spawnSync(command, { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, output: `${result.stdout.toString()}${result.stderr.toString()}` };
}

describe("typed events", () => {
  test("the generated types are those of the repository's schemas/ (run `bun run generate:types` after a change)", () => {
    const committed = readFileSync(join(PACKAGE, "src/generated/gateway-events.ts"), "utf8");
    expect(generate(join(ROOT, "schemas"))).toBe(committed);
  });

  test("enqueue() is checked at compile time: a wrong type or data does not compile, a right one does (and a Subscriber takes the platform's WebSocket)", () => {
    const folder = mkdtempSync(join(PACKAGE, ".typed-"));
    try {
      const client = JSON.stringify(join(PACKAGE, "src/index.js"));
      const preamble = `import { EventClient, type GatewayEvents, Subscriber } from ${client};
const events = new EventClient<GatewayEvents>({ url: "https://events.example.com", token: "t" });\n`;
      writeFileSync(
        join(folder, "right.ts"),
        `${preamble}events.enqueue({ type: "page_view", data: { url: "https://example.com/", duration_ms: 5 } });
events.enqueue({ type: "sensor_reading", channel: "iot", data: { sensor: "s1", value: 21.5, unit: "celsius" } });
// The platform's own WebSocket, as a test or a wrapper passes it (its handlers take its event classes).
new Subscriber({ url: "https://events.example.com", token: "t", WebSocket });
new Subscriber({ url: "https://events.example.com", token: "t", WebSocket: globalThis.WebSocket });\n`,
      );
      writeFileSync(
        join(folder, "wrong.ts"),
        `${preamble}events.enqueue({ type: "page_view", data: { url: 42 } });
events.enqueue({ type: "page_veiw", data: { url: "https://example.com/" } });
events.enqueue({ type: "sensor_reading", data: { sensor: "s1", value: 1, unit: "kelvin" } });
events.enqueue({ type: "click", data: {} });\n`,
      );
      const options = [
        "--noEmit",
        "--strict",
        "--noUncheckedIndexedAccess",
        "--skipLibCheck",
        "--target",
        "ES2022",
      ];
      const more = [
        "--module",
        "ESNext",
        "--moduleResolution",
        "Bundler",
        "--lib",
        "ES2022,DOM,DOM.Iterable",
      ];
      more.push("--types", "node", "--allowImportingTsExtensions");
      const tsc = join(ROOT, "node_modules/.bin/tsc");
      // The examples are typed users of the client too: checked in the same run (tsc is slow to start).
      const examples = [
        "browser-events/page.ts",
        "live-dashboard/dashboard.ts",
        "node-producer/producer.ts",
      ].map((file) => join(ROOT, "examples", file));
      // One run: the right files have no error, the wrong one one per wrong call, on its line.
      const checked = run([
        tsc,
        ...options,
        ...more,
        join(folder, "right.ts"),
        ...examples,
        join(folder, "wrong.ts"),
      ]);
      expect(checked.code).not.toBe(0);
      expect(
        checked.output.split("\n").filter((line) => line.includes("error") && !line.includes("wrong.ts(")),
      ).toEqual([]);
      const errors = checked.output.split("\n").filter((line) => line.includes("wrong.ts("));
      expect(errors.map((line) => /wrong\.ts\((\d+),/.exec(line)?.[1])).toEqual(["3", "4", "5", "6"]);
      expect(checked.output).toContain("Type 'number' is not assignable to type 'string'");
      expect(checked.output).toContain('"page_veiw"');
      expect(checked.output).toContain('"kelvin"');
      expect(checked.output).toContain("ClickData");
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("the package", () => {
  test(`minified and gzipped, the browser bundle stays within ${SIZE_BUDGET_BYTES} bytes`, async () => {
    const build = await Bun.build({
      entrypoints: [join(PACKAGE, "src/index.ts")],
      target: "browser",
      format: "esm",
      minify: true,
    });
    const bundle = new Uint8Array(await (build.outputs[0] as Blob).arrayBuffer());
    const gzipped = Bun.gzipSync(bundle).byteLength;
    console.log(`client bundle: ${bundle.byteLength} bytes minified, ${gzipped} bytes gzipped`);
    expect(gzipped).toBeLessThanOrEqual(SIZE_BUDGET_BYTES);
    // The browser bundle never pulls in Node's modules (those are in ./file-queue).
    expect(new TextDecoder().decode(bundle)).not.toContain("node:");
  });

  test("speaks the protocol version of the repository's asyncapi.yaml", () => {
    const asyncapi = readFileSync(join(ROOT, "asyncapi.yaml"), "utf8");
    expect(/^info:\n(?: .*\n)*? {2}version: "?([^"\n]+)"?$/m.exec(asyncapi)?.[1]).toBe(PROTOCOL_VERSION);
  });

  test("npm pack builds it and ships the bundle, types, LICENSE and CHANGELOG", () => {
    const manifest = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(manifest).toMatchObject({
      license: "Apache-2.0",
      repository: { type: "git", directory: "clients/typescript" },
      scripts: { prepack: "bun run build" },
      exports: {
        ".": { types: "./dist/index.d.ts", import: "./dist/index.js" },
        "./file-queue": { types: "./dist/file-queue.d.ts", import: "./dist/file-queue.js" },
      },
    });
    const license = readFileSync(join(PACKAGE, "LICENSE"), "utf8");
    expect(license).toContain("Apache License");
    expect(license).toContain("Version 2.0, January 2004");
    expect(readFileSync(join(ROOT, "LICENSE"), "utf8")).toBe(license);
    const packed = run(["npm", "pack", "--dry-run", "--json", "--ignore-scripts=false"]);
    expect(packed.code).toBe(0);
    const json = packed.output.slice(packed.output.indexOf("[\n"));
    const [pack] = JSON.parse(json.slice(0, json.lastIndexOf("]") + 1)) as Array<{
      files: Array<{ path: string }>;
    }>;
    const files = (pack?.files ?? []).map((file) => file.path);
    expect(files).toEqual(
      expect.arrayContaining([
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "package.json",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/file-queue.js",
        "dist/file-queue.d.ts",
        "dist/generated/gateway-events.d.ts",
        "scripts/generate-types.ts",
      ]),
    );
    expect(files.some((file) => file.startsWith("src/") || file.startsWith("test/"))).toBe(false);
  }, 60_000);
});
