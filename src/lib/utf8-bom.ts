const UTF8_BOM = [0xef, 0xbb, 0xbf];

/** The bytes after a leading UTF-8 byte order mark, which RFC 8259 §8.1 lets a parser ignore. */
export function withoutUtf8Bom(bytes: Uint8Array): Uint8Array {
  return bytes[0] === UTF8_BOM[0] && bytes[1] === UTF8_BOM[1] && bytes[2] === UTF8_BOM[2]
    ? bytes.subarray(3)
    : bytes;
}
