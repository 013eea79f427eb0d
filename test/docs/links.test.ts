import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = normalize(join(import.meta.dir, "../.."));

/** The documents a reader follows: each relative link and each path they name must exist. */
function documents(): string[] {
  const found = ["README.md", "ARCHITECTURE.md", "clients/typescript/README.md", "deploy/README.md"];
  const walk = (dir: string, keep: (name: string) => boolean, deep: boolean) => {
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() && deep && entry.name !== "node_modules") walk(path, keep, deep);
      else if (entry.isFile() && keep(entry.name)) found.push(path);
    }
  };
  walk("docs", (name) => name.endsWith(".md"), true);
  walk("examples", (name) => name === "README.md", true);
  walk("loadtest", (name) => name.endsWith(".md"), false);
  return found;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, "")
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function anchorsOf(markdown: string): Set<string> {
  const text = markdown.replace(/```[\s\S]*?```/g, "");
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of text.matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = slug(heading as string);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  for (const [, id] of text.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(id as string);
  return anchors;
}

/** Problems with one document's relative links: missing targets, targets outside the repository, unknown anchors. */
function linkProblems(document: string, text = readFileSync(join(ROOT, document), "utf8")): string[] {
  const problems: string[] = [];
  const targets = [
    ...[...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1] as string),
    ...[...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((match) => match[1] as string),
  ];
  for (const target of targets) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: …
    const [pathPart, anchor] = target.split("#") as [string, string | undefined];
    if (pathPart === "") {
      if (anchor && !anchorsOf(text).has(anchor)) problems.push(`${document}: ${target} names no heading`);
      continue;
    }
    const path = normalize(join(ROOT, dirname(document), pathPart));
    if (relative(ROOT, path).startsWith("..")) {
      problems.push(`${document}: ${target} is outside the repository`);
      continue;
    }
    if (!existsSync(path)) {
      problems.push(`${document}: ${target} does not exist`);
      continue;
    }
    if (
      anchor &&
      path.endsWith(".md") &&
      statSync(path).isFile() &&
      !anchorsOf(readFileSync(path, "utf8")).has(anchor)
    )
      problems.push(`${document}: ${target} names no heading of ${relative(ROOT, path)}`);
  }
  return problems;
}

/**
 * Paths under src/ a document names (`src/lib/json-scan.ts`, src/features/): they
 * must exist in the repository, or in the package whose README names them.
 */
function sourcePathProblems(document: string, text = readFileSync(join(ROOT, document), "utf8")): string[] {
  const problems: string[] = [];
  for (const match of text.matchAll(/(?<![\w./-])src\/[\w./-]*/g)) {
    const named = (match[0] as string).replace(/[.]+$/, "");
    if (named.includes("*")) continue;
    const candidates = [join(ROOT, named), join(ROOT, dirname(document), named)];
    if (!candidates.some((path) => existsSync(path))) problems.push(`${document}: ${named} does not exist`);
  }
  return problems;
}

const docs = documents();

test("every relative link in the docs leads to a file in the repository (and a heading, when it names one)", () => {
  expect(docs.length).toBeGreaterThan(8);
  expect(docs.flatMap((document) => linkProblems(document))).toEqual([]);
});

test("every src/ path the docs name exists", () => {
  expect(docs.flatMap((document) => sourcePathProblems(document))).toEqual([]);
});

test("the checks catch a dead link, a link out of the repository, a wrong anchor and a wrong path", () => {
  const probe = "docs/probe.md";
  const text =
    "[a](../README.md) [b](nowhere.md) [c](../../shared/SPEC.md) [d](deploy.md#no-such-heading) [e](#here) [f](#there)\n" +
    "## Here\nsee `src/json/scan.ts`, `src/lib/json-scan.ts`\n";
  expect(linkProblems(probe, text)).toEqual([
    `${probe}: nowhere.md does not exist`,
    `${probe}: ../../shared/SPEC.md is outside the repository`,
    `${probe}: deploy.md#no-such-heading names no heading of docs/deploy.md`,
    `${probe}: #there names no heading`,
  ]);
  expect(sourcePathProblems(probe, text)).toEqual([`${probe}: src/json/scan.ts does not exist`]);
});
