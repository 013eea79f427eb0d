import { expect, test } from "bun:test";

test("every setting the config reads is documented in the README table", async () => {
  const source = await Bun.file(new URL("../../src/config/config.ts", import.meta.url)).text();
  const readme = await Bun.file(new URL("../../README.md", import.meta.url)).text();
  const names = [...source.matchAll(/read\("([A-Z0-9_]+)"/g)].map((match) => match[1] as string);
  expect(names.length).toBeGreaterThan(20);
  const undocumented = names.filter(
    (name) => name !== "AWS_DEFAULT_REGION" && !readme.includes(`\`${name}\``),
  );
  expect(undocumented).toEqual([]);
});
