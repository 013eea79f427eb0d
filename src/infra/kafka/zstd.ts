import zlib from "node:zlib";
import { compressionsAlgorithms } from "@platformatic/kafka";

/**
 * zstd for Kafka record batches on every runtime the gateway supports.
 *
 * Every batch the gateway writes or reads goes through @platformatic/kafka's
 * codec table (`compressionsAlgorithms`, and `compressionsAlgorithmsByBitmask`
 * holding the same objects): the Produce encoder, the fan-out reader's walk
 * and the client's own Fetch decoder (history read from the fan-out topic).
 * Its zstd entry calls `node:zlib`, which has zstd on Bun and on Node ≥ 22.15
 * but not on Node 20, where the entry throws. There the entry is given
 * `@bokuweb/zstd-wasm` (the zstd library compiled to WebAssembly, no native
 * build): the same frames, which any Kafka client and the brokers read.
 *
 * The WebAssembly module instantiates asynchronously, so it is loaded ahead of
 * any synchronous call: at start when KAFKA_COMPRESSION or
 * KAFKA_FANOUT_COMPRESSION is zstd, else on the first zstd batch read (another
 * instance, a Bun one say, may write the fan-out topic with zstd). A gateway
 * that never meets zstd never loads it, nor does one whose runtime has zstd.
 */

/** A record batch's codec bits for zstd (`attributes & 0x07`). */
export const ZSTD_BITMASK = 4;

/** Which zstd the codec table uses: the runtime's zlib, or the WebAssembly build. */
export type ZstdSource = "zlib" | "wasm";

interface ZstdCodec {
  compress(data: Uint8Array): Buffer;
  decompress(data: Uint8Array): Buffer;
}

/** What a codec table entry is handed: a Buffer, or the client's DynamicBuffer (whose `buffer` joins its chunks). */
type CodecInput = Uint8Array | { buffer: Buffer };
interface CodecEntry {
  compressSync(data: CodecInput): Buffer;
  decompressSync(data: CodecInput): Buffer;
  available?: boolean;
}

type ZlibWithZstd = object & { zstdCompressSync?: unknown };
const runtimeZlib: ZlibWithZstd = zlib as ZlibWithZstd;

/** Whether `runtimeZlib` has zstd itself (Bun, Node ≥ 22.15). */
export function hasNativeZstd(zlibOfRuntime: ZlibWithZstd = runtimeZlib): boolean {
  return typeof zlibOfRuntime.zstdCompressSync === "function";
}

/** zstd's error code for an output buffer too small (ZSTD_error_dstSize_tooSmall). */
const DST_SIZE_TOO_SMALL = 70;
/** Output room first tried for a frame that does not state its size (a streaming writer's, such as the Java client's). */
const FIRST_GUESS_BYTES = 1024 * 1024;
/** No batch decompresses to more: past it the frame is refused rather than memory grown without end. */
const MAX_DECOMPRESSED_BYTES = 1024 * 1024 * 1024;

interface ZstdWasm {
  init(): Promise<void>;
  compress(data: Uint8Array, level?: number): Uint8Array;
  decompress(data: Uint8Array, options?: { defaultHeapSize?: number }): Uint8Array;
}

let wasmCodec: Promise<ZstdCodec> | undefined;

/** The WebAssembly zstd, loaded and instantiated once per process whatever the runtime (tests use it on Bun too). */
export function loadWasmZstd(): Promise<ZstdCodec> {
  wasmCodec ??= (async () => {
    const imported = (await import("@bokuweb/zstd-wasm")) as ZstdWasm & { default?: ZstdWasm };
    const wasm = imported.default ?? imported;
    await wasm.init();
    return {
      compress: (data) => asBuffer(wasm.compress(data, 3)),
      decompress: (data) => asBuffer(decompressGrowing(wasm, data)),
    };
  })();
  // A failed load (a missing package) is tried again by the next caller rather than remembered.
  wasmCodec.catch(() => {
    wasmCodec = undefined;
  });
  return wasmCodec;
}

/**
 * The package sizes its output from the frame header's content size; a frame
 * without one (written by a streaming compressor) gets the room asked for, so
 * a frame larger than that is tried again with twice the room.
 */
function decompressGrowing(wasm: ZstdWasm, data: Uint8Array): Uint8Array {
  let room = Math.max(FIRST_GUESS_BYTES, data.length * 16);
  for (;;) {
    try {
      return wasm.decompress(data, { defaultHeapSize: room });
    } catch (error) {
      // The package's message: "Failed to compress with code -70" (sic, for decompression too).
      const code = /code (-?\d+)/.exec(error instanceof Error ? error.message : "")?.[1];
      if (Math.abs(Number(code)) !== DST_SIZE_TOO_SMALL || room >= MAX_DECOMPRESSED_BYTES)
        throw new Error(
          `zstd: cannot decompress the batch (${error instanceof Error ? error.message : error})`,
        );
      room = Math.min(room * 2, MAX_DECOMPRESSED_BYTES);
    }
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function bytesOf(data: CodecInput): Uint8Array {
  return data instanceof Uint8Array ? data : data.buffer;
}

const clientZstd = compressionsAlgorithms.zstd as unknown as CodecEntry;
let source: ZstdSource | undefined;
let loading: Promise<ZstdSource> | undefined;

/** Whether zstd batches can be written and read now, without waiting (always, where the runtime has zstd). */
export function zstdReady(): boolean {
  return source !== undefined || hasNativeZstd();
}

/**
 * Makes the client's zstd entry work on this runtime: the runtime's own zstd
 * where it has one (the entry already calls it), else the WebAssembly build
 * installed into the entry. Answers which one it uses; once per process.
 */
export function ensureZstd(): Promise<ZstdSource> {
  loading ??= selectZstd(runtimeZlib, clientZstd).then((selected) => {
    source = selected;
    return selected;
  });
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

/** The selection itself, on a given zlib and codec table entry (tests hand it a zlib without zstd). */
export async function selectZstd(zlibOfRuntime: ZlibWithZstd, entry: CodecEntry): Promise<ZstdSource> {
  if (hasNativeZstd(zlibOfRuntime)) return "zlib";
  const codec = await loadWasmZstd();
  entry.compressSync = (data) => codec.compress(bytesOf(data));
  entry.decompressSync = (data) => codec.decompress(bytesOf(data));
  entry.available = true;
  return "wasm";
}

/** The client's refusal of a zstd batch where its zstd entry has no codec, however wrapped (`cause`, `errors`). */
export function isZstdUnavailable(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 4) return false;
  const { code } = error as { code?: unknown };
  if (code === "PLT_KFK_UNSUPPORTED_COMPRESSION") return true;
  const nested = [error.cause, ...((error as { errors?: unknown[] }).errors ?? [])];
  return nested.some((inner) => isZstdUnavailable(inner, depth + 1));
}
