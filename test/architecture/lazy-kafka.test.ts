import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import packageJson from "../../package.json";
import { tempDirs } from "../support/temp-dir.ts";

const ROOT = join(import.meta.dir, "../..");
const tempDir = tempDirs();

/**
 * The Kafka client and the MSK signer cost a start most of its CPU when imported (loadtest/RESULTS.md,
 * "What a gateway start costs"): an embedded start, and every start before the Kafka sink is chosen,
 * must not import them. Only `import()` may reach them.
 */
const KAFKA_ONLY = ["@platformatic/kafka", "aws-msk-iam-sasl-signer-js", "@aws-sdk/credential-providers"];

/** What a file imports before its first line runs: static imports and re-exports, as the runtime sees them. */
function staticImports(file: string): string[] {
  const loader = file.endsWith(".ts") ? "ts" : "js";
  return new Bun.Transpiler({ loader })
    .scanImports(readFileSync(file, "utf8"))
    .filter((entry) => entry.kind === "import-statement")
    .map((entry) => entry.path);
}

/**
 * Every file and package loaded with a file, before its first line runs: its static imports, followed
 * through relative files (`import type`, erased, is not one). Each package maps to the file importing it.
 */
function loadedWith(entry: string): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const specifier of staticImports(file)) {
      // A relative JSON module (package.json) is data: it imports nothing.
      if (specifier.endsWith(".json")) files.add(normalize(join(dirname(file), specifier)));
      else if (specifier.startsWith(".")) visit(normalize(join(dirname(file), specifier)));
      else if (!packages.has(specifier)) packages.set(specifier, file);
    }
  };
  visit(entry);
  return { files, packages };
}

function kafkaOnlyIn(packages: Map<string, string>): string[] {
  return [...packages]
    .filter(([name]) => KAFKA_ONLY.some((only) => name === only || name.startsWith(`${only}/`)))
    .map(([name, file]) => `${name} <- ${file}`);
}

describe("the Kafka client is imported only when KAFKA_BROKERS is set", () => {
  test("no static import from src/main.ts reaches it, nor any of src/infra/kafka; the Kafka sink's module does", () => {
    const start = loadedWith(join(ROOT, "src/main.ts"));
    expect(kafkaOnlyIn(start.packages)).toEqual([]);
    expect([...start.files].filter((file) => file.includes("/src/infra/kafka/"))).toEqual([]);
    expect(start.files.has(join(ROOT, "src/app.ts"))).toBe(true);
    const kafkaSink = loadedWith(join(ROOT, "src/kafka-sink.ts")).packages;
    for (const name of KAFKA_ONLY) expect(kafkaSink.has(name)).toBe(true);
  });

  test("nor from the Node bundle `npm run build` makes: the Kafka sink is a chunk of its own", () => {
    const outdir = tempDir("lazy-kafka-");
    const command = packageJson.scripts.build
      .split(" ")
      .map((word) =>
        word === "bun" ? process.execPath : word.replace(/^--outdir=dist$/, `--outdir=${outdir}`),
      );
    expect(command).toContain(`--outdir=${outdir}`);
    const built = Bun.spawnSync(command, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(built.stderr.toString()).toBe("");
    expect(built.exitCode).toBe(0);
    const entry = join(outdir, "main.js");
    expect(existsSync(entry)).toBe(true);
    expect(kafkaOnlyIn(loadedWith(entry).packages)).toEqual([]);
    // The check sees imports: the bundle does load the client, from a chunk that only import() reaches.
    const bundled = readFileSync(entry, "utf8");
    const chunk = /import\(\s*["'](\.\/kafka-sink[^"']*)["']\s*\)/.exec(bundled)?.[1];
    expect(chunk).toBeString();
    expect(loadedWith(join(outdir, chunk as string)).packages.has("@platformatic/kafka")).toBe(true);
  });
});
