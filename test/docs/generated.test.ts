import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { generatedDocuments } from "../../scripts/gen-docs.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

test("the generated documents (docs/errors.md, docs/metrics.md) match the code", async () => {
  const stale: string[] = [];
  for (const [path, text] of Object.entries(await generatedDocuments())) {
    let committed = "";
    try {
      committed = readFileSync(`${ROOT}${path}`, "utf8");
    } catch {}
    if (committed !== text) stale.push(`${path} is out of date: run bun scripts/gen-docs.ts`);
  }
  expect(stale).toEqual([]);
});
