import { expect, test } from "bun:test";

test("every setting the config reads is documented in docs/configuration.md's table", async () => {
  const source = await Bun.file(new URL("../../src/config/config.ts", import.meta.url)).text();
  const table = await Bun.file(new URL("../../docs/configuration.md", import.meta.url)).text();
  const documented = new Set(
    [...table.matchAll(/^\|([^|]+)\|/gm)].flatMap((row) =>
      [...(row[1] as string).matchAll(/`([A-Z0-9_]+)`/g)].map((name) => name[1] as string),
    ),
  );
  const names = [...source.matchAll(/read\("([A-Z0-9_]+)"/g)].map((match) => match[1] as string);
  expect(names.length).toBeGreaterThan(20);
  const undocumented = names
    .filter((name) => name !== "AWS_DEFAULT_REGION" && !documented.has(name))
    .map((name) => `${name}: add a row to the table in docs/configuration.md`);
  expect(undocumented).toEqual([]);
});
