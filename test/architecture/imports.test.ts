import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

const SRC = join(import.meta.dir, "../../src");

/**
 * Which layers each layer may import (ARCHITECTURE.md draws the same arrows).
 * A feature may import only its own folder among the features; infrastructure
 * never imports a feature; the composition root (the files directly in src/) imports anything.
 */
const ALLOWED: Record<string, string[]> = {
  domain: ["domain"],
  lib: ["lib", "log"],
  log: ["log"],
  metrics: ["metrics"],
  config: ["config"],
  ports: ["ports", "domain"],
  http: ["http", "ports", "domain", "lib", "log", "metrics"],
  features: ["ports", "domain", "lib", "log", "metrics", "http"],
  infra: ["infra", "ports", "domain", "lib", "log", "metrics", "http", "config"],
  transport: ["transport", "ports", "http", "domain", "lib"],
  lifecycle: ["lifecycle", "ports", "domain", "lib", "log"],
};

function layerOf(file: string): string {
  const [first] = file.split("/");
  return file.includes("/") ? (first as string) : "root";
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") ? [relative(SRC, path)] : [];
  });
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)[^"';]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), "utf8");
  return [...text.matchAll(IMPORT)].map((match) =>
    normalize(join(dirname(file), (match[1] ?? match[2]) as string)),
  );
}

test("every module imports only the layers below it", () => {
  const files = sources(SRC);
  expect(files.length).toBeGreaterThan(40);
  const violations: string[] = [];
  for (const file of files) {
    const layer = layerOf(file);
    if (layer === "root") continue;
    const allowed = ALLOWED[layer];
    if (!allowed) {
      violations.push(`${file}: folder ${layer} has no place in the layers`);
      continue;
    }
    for (const target of importsOf(file)) {
      const targetLayer = layerOf(target);
      if (targetLayer === "root") violations.push(`${file} -> ${target}: only main.ts imports the root`);
      else if (layer === "features" && targetLayer === "features") {
        const feature = file.split("/")[1];
        const other = target.split("/")[1];
        if (feature !== other) violations.push(`${file} -> ${target}: features do not import each other`);
      } else if (!allowed.includes(targetLayer)) violations.push(`${file} -> ${target}`);
    }
  }
  expect(violations).toEqual([]);
});

test("the check sees imports: a file that imports upward is caught", () => {
  expect(importsOf("app.ts").some((target) => target.startsWith("features/"))).toBe(true);
  expect(importsOf("features/ingest/route.ts")).toContain("domain/errors.ts");
});
