/**
 * Past this length a string is measured by the native call, which then
 * costs less than a loop: a 36-character id took 57-65 ns in the loop
 * against 19 natively on Node (27-39 against 16 on Bun).
 */
export const SHORT_STRING = 16;

/**
 * UTF-8 bytes of `text`: its length when it is short and ASCII (keys,
 * header names, ids, channels), counted without a native call per string.
 */
export function utf8Length(text: string): number {
  if (text.length > SHORT_STRING) return Buffer.byteLength(text);
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return Buffer.byteLength(text);
  return text.length;
}
