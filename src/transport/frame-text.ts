import { isUtf8 } from "node:buffer";

/** A leading U+FEFF is kept, as in a text frame: the frame is then not JSON text, on both engines. */
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * A binary frame's bytes read as the UTF-8 text a client frame is, or
 * undefined when they are not UTF-8. Decoding them anyway would turn each bad
 * byte into U+FFFD, and a publish would reach subscribers with other text
 * than was sent (a text frame's bytes are checked by the engine, which closes
 * the socket with 1007).
 */
export function binaryFrameText(bytes: ArrayBuffer | Uint8Array): string | undefined {
  return isUtf8(bytes) ? utf8.decode(bytes) : undefined;
}
