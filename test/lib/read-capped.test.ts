import { expect, test } from "bun:test";
import { readCapped } from "../../src/lib/read-capped.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

async function* chunks(...parts: Uint8Array[]) {
  yield* parts;
}

test("the text of the whole body: a character split between chunks is whole, a leading BOM dropped", async () => {
  const euro = bytes("€"); // 3 bytes
  expect(
    await readCapped(chunks(bytes('\uFEFF{"a":"'), euro.slice(0, 1), euro.slice(1), bytes('"}')), 100),
  ).toBe('{"a":"€"}');
});

test("a body of exactly the limit is read; one byte more is refused, and the rest never asked for", async () => {
  expect(await readCapped(chunks(bytes("12345"), bytes("678")), 8)).toBe("12345678");
  let pulled = 0;
  async function* counted() {
    for (;;) {
      pulled++;
      yield bytes("12345");
    }
  }
  await expect(readCapped(counted(), 8)).rejects.toThrow(
    "larger than 8 bytes, the limit of a remote document",
  );
  expect(pulled).toBe(2);
});

test("a declared length over the limit is refused before a byte is read", async () => {
  let pulled = 0;
  async function* counted() {
    pulled++;
    yield bytes("{}");
  }
  await expect(readCapped(counted(), 8, 9)).rejects.toThrow("larger than 8 bytes");
  expect(pulled).toBe(0);
  expect(await readCapped(chunks(bytes("{}")), 8, 8)).toBe("{}");
});
