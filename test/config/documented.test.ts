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

test("the accepted column gives each number's range and each switch as the config parses them", async () => {
  const source = await Bun.file(new URL("../../src/config/config.ts", import.meta.url)).text();
  const table = await Bun.file(new URL("../../docs/configuration.md", import.meta.url)).text();
  const accepted = new Map(
    [...table.matchAll(/^\| `([A-Z0-9_]+)` \|[^|]+\| ([^|]+) \|/gm)].map((row) => [row[1], row[2]]),
  );
  const expected = new Map<string, string>();
  for (const [, name, parser, args] of source.matchAll(
    /read\("([A-Z0-9_]+)", (integer\(([^)]*)\)|boolean)/g,
  )) {
    if (parser === "boolean") {
      expected.set(name as string, "`true`, `false`");
      continue;
    }
    // The bounds as written in the code: digit groups and products of them (64 * 1024 * 1024).
    const [min, max] = (args as string).split(",").map((bound) =>
      bound
        .replaceAll("_", "")
        .split("*")
        .reduce((product, factor) => product * Number(factor), 1),
    );
    expected.set(name as string, max === undefined ? `≥ ${min}` : `${min}–${max}`);
  }
  expect(expected.size).toBeGreaterThan(60);
  const mismatched = [...expected]
    .filter(([name, form]) => accepted.get(name) !== form)
    .map(([name, form]) => `${name}: the code takes ${form}, the table says ${accepted.get(name)}`);
  expect(mismatched).toEqual([]);
});

test("the default column gives each plain default as the config has it", async () => {
  const source = await Bun.file(new URL("../../src/config/config.ts", import.meta.url)).text();
  const table = await Bun.file(new URL("../../docs/configuration.md", import.meta.url)).text();
  const documented = new Map(
    [...table.matchAll(/^\| `([A-Z0-9_]+)` \| ([^|]+) \|/gm)].map((row) => [
      row[1],
      (row[2] as string).trim(),
    ]),
  );
  const expected = new Map<string, string>();
  // Numbers as written in the code (digit groups and products of them), switches, and quoted words.
  for (const [, name, value] of source.matchAll(/read\("([A-Z0-9_]+)", integer\([^)]*\), ([\d_ *]+)\)/g))
    expected.set(
      name as string,
      String(
        (value as string)
          .replaceAll("_", "")
          .split("*")
          .reduce((product, factor) => product * Number(factor), 1),
      ),
    );
  for (const [, name, value] of source.matchAll(/read\("([A-Z0-9_]+)", boolean, (true|false)\)/g))
    expected.set(name as string, value as string);
  for (const [, name, value] of source.matchAll(/read\("([A-Z0-9_]+)", [\w(). ]+, "([^"]*)"\)/g))
    expected.set(name as string, value as string);
  expect(expected.size).toBeGreaterThan(60);
  const mismatched = [...expected]
    .filter(([name, value]) => documented.get(name) !== `\`${value}\``)
    .map(
      ([name, value]) => `${name}: the code's default is ${value}, the table says ${documented.get(name)}`,
    );
  expect(mismatched).toEqual([]);
});
