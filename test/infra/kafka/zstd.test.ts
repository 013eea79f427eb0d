import { describe, expect, test } from "bun:test";
import type { Transform } from "node:stream";
import nodeZlib from "node:zlib";
import { compressionsAlgorithms, UnsupportedCompressionError, Writer } from "@platformatic/kafka";
import { holdsCompression } from "../../../src/infra/kafka/fanout-fetch.ts";
import { encodeRecordBatch } from "../../../src/infra/kafka/produce-request.ts";
import {
  ensureZstd,
  hasNativeZstd,
  isZstdUnavailable,
  selectZstd,
  ZSTD_BITMASK,
} from "../../../src/infra/kafka/zstd.ts";

/** Bun's zlib, which has zstd (the @types/node of Node 20 does not declare it). */
const zlib = nodeZlib as typeof nodeZlib & {
  zstdCompressSync(data: Uint8Array): Buffer;
  zstdDecompressSync(data: Uint8Array): Buffer;
  createZstdCompress(): Transform;
};

/** A codec table entry as the client's, which throws as its zstd entry does on Node 20. */
function unavailableEntry() {
  const refuse = () => {
    throw new UnsupportedCompressionError("zstd is not supported in the current Node.js version");
  };
  return {
    compressSync: refuse as (data: unknown) => Buffer,
    decompressSync: refuse as (data: unknown) => Buffer,
    available: false,
  };
}

/** A frame written in pieces, as a streaming compressor (the Java client's) writes one: no content size in its header. */
async function streamedFrame(data: Buffer): Promise<Buffer> {
  const compressor = zlib.createZstdCompress();
  const chunks: Buffer[] = [];
  compressor.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => compressor.on("end", resolve));
  for (let at = 0; at < data.length; at += 65_536) compressor.write(data.subarray(at, at + 65_536));
  compressor.end();
  await ended;
  return Buffer.concat(chunks);
}

// Bun has zstd in node:zlib: it checks the WebAssembly codec against the runtime's, both ways.
describe("zstd codec selection", () => {
  test("a runtime whose zlib has zstd keeps it: the client's entry is left alone and nothing is loaded", async () => {
    const entry = unavailableEntry();
    const { compressSync } = entry;
    expect(await selectZstd({ zstdCompressSync: () => Buffer.alloc(0) }, entry)).toBe("zlib");
    expect(entry.compressSync).toBe(compressSync);
    expect(entry.available).toBe(false);
    expect(hasNativeZstd()).toBe(true);
    expect(await ensureZstd()).toBe("zlib");
  });

  test("a runtime without (Node 20) gets the WebAssembly zstd in the client's entry, whose frames the runtime's zstd reads and the other way round", async () => {
    const entry = unavailableEntry();
    expect(await selectZstd({}, entry)).toBe("wasm");
    expect(entry.available).toBe(true);
    const data = Buffer.from(
      JSON.stringify(Array.from({ length: 2000 }, (_, n) => ({ n, text: "ünïcødé ✓ 𝄞" }))),
    );
    const compressed = entry.compressSync(data);
    expect(Buffer.isBuffer(compressed)).toBe(true);
    expect(compressed.length).toBeLessThan(data.length / 4);
    expect(zlib.zstdDecompressSync(compressed)).toEqual(data);
    expect(entry.decompressSync(zlib.zstdCompressSync(data))).toEqual(data);
    // The client hands its own encoder's DynamicBuffer too.
    const dynamic = Writer.create().dynamicBuffer.append(data.subarray(0, 1000)).append(data.subarray(1000));
    expect(zlib.zstdDecompressSync(entry.compressSync(dynamic))).toEqual(data);
  });

  test("the WebAssembly zstd reads a frame that does not state its size, however large", async () => {
    const entry = unavailableEntry();
    await selectZstd({}, entry);
    const data = Buffer.from("the same record again ".repeat(300_000)); // 6.6 MB
    const frame = await streamedFrame(data);
    expect(frame.length).toBeLessThan(64 * 1024);
    expect(entry.decompressSync(frame)).toEqual(data);
    expect(() => entry.decompressSync(Buffer.from("not a zstd frame at all"))).toThrow("zstd");
  });

  test("a Produce batch the WebAssembly zstd compressed decodes with the runtime's zstd", async () => {
    const entry = unavailableEntry();
    await selectZstd({}, entry);
    const records = [{ topic: "t", key: "k", value: "v".repeat(500), headers: { tenant: "acme" } }];
    const plain = encodeRecordBatch("t", 0, records, {}, 0).subarray(61);
    const zstd = compressionsAlgorithms.zstd;
    const { compressSync } = zstd;
    // The client's entry swapped for this one just for the encoding.
    (zstd as unknown as { compressSync: unknown }).compressSync = entry.compressSync;
    try {
      const batch = encodeRecordBatch("t", 0, records, { compression: "zstd" }, 0);
      expect(batch.readInt16BE(21) & 0x07).toBe(ZSTD_BITMASK);
      expect(zlib.zstdDecompressSync(batch.subarray(61))).toEqual(plain);
      expect(holdsCompression(batch, ZSTD_BITMASK)).toBe(true);
    } finally {
      (zstd as unknown as { compressSync: unknown }).compressSync = compressSync;
    }
  });
});

describe("holdsCompression", () => {
  test("finds a batch of that codec among others, by its attributes only", () => {
    const records = [{ topic: "t", key: "", value: "x", headers: {} }];
    const lz4 = encodeRecordBatch("t", 0, records, { compression: "lz4" });
    const zstd = encodeRecordBatch("t", 0, records, { compression: "zstd" });
    const none = encodeRecordBatch("t", 0, records, {});
    expect(holdsCompression(Buffer.concat([none, lz4]), ZSTD_BITMASK)).toBe(false);
    expect(holdsCompression(Buffer.concat([none, lz4, zstd]), ZSTD_BITMASK)).toBe(true);
    // A batch cut off by the fetch's byte limit is not looked into.
    expect(holdsCompression(Buffer.concat([none, zstd.subarray(0, zstd.length - 1)]), ZSTD_BITMASK)).toBe(
      false,
    );
  });
});

describe("isZstdUnavailable", () => {
  test("the client's refusal of a compression, however wrapped; not other failures", () => {
    const refusal = new UnsupportedCompressionError("zstd is not supported in the current Node.js version");
    expect(isZstdUnavailable(refusal)).toBe(true);
    expect(isZstdUnavailable(new Error("fetch failed", { cause: refusal }))).toBe(true);
    expect(isZstdUnavailable(new AggregateError([new Error("other"), refusal]))).toBe(true);
    expect(isZstdUnavailable(new Error("log read timed out"))).toBe(false);
    expect(isZstdUnavailable("zstd")).toBe(false);
  });
});
