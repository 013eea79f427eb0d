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

/** A static import or re-export (not `import type`, which is erased), or a bare `import "x"`. */
const STATIC_IMPORT =
  /(?:^|\n)\s*(?:import|export)\s+(?!type\b)[^"';]*?\bfrom\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']/g;

/** The packages a file loads before its first line runs: its static imports, followed through relative files. */
function packagesLoadedBy(entry: string): Map<string, string> {
  const packages = new Map<string, string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const match of readFileSync(file, "utf8").matchAll(STATIC_IMPORT)) {
      const specifier = (match[1] ?? match[2]) as string;
      if (specifier.startsWith(".")) visit(normalize(join(dirname(file), specifier)));
      else if (!packages.has(specifier)) packages.set(specifier, file);
    }
  };
  visit(entry);
  return packages;
}

function kafkaOnlyIn(packages: Map<string, string>): string[] {
  return [...packages]
    .filter(([name]) => KAFKA_ONLY.includes(name))
    .map(([name, file]) => `${name} <- ${file}`);
}

describe("the Kafka client is imported only when KAFKA_BROKERS is set", () => {
  test("no static import from src/main.ts reaches it; the Kafka sink's module does", () => {
    expect(kafkaOnlyIn(packagesLoadedBy(join(ROOT, "src/main.ts")))).toEqual([]);
    const kafkaSink = packagesLoadedBy(join(ROOT, "src/kafka-sink.ts"));
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
    expect(kafkaOnlyIn(packagesLoadedBy(entry))).toEqual([]);
    // The check sees imports: the bundle does load the client, from a chunk that only import() reaches.
    const bundled = readFileSync(entry, "utf8");
    const chunk = /import\(\s*["'](\.\/kafka-sink[^"']*)["']\s*\)/.exec(bundled)?.[1];
    expect(chunk).toBeString();
    expect(packagesLoadedBy(join(outdir, chunk as string)).has("@platformatic/kafka")).toBe(true);
  });
});
