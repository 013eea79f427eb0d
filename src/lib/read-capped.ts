/**
 * The whole of `body` as UTF-8 text (a leading BOM dropped, as `Response.text()`
 * does), or a rejection once it holds more than `maxBytes`: a `declaredBytes`
 * (Content-Length) over it is refused before any byte is read, and a body that
 * grows past it is cancelled there, so an endless or huge one never sits in
 * memory whole.
 */
export async function readCapped(
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
  declaredBytes?: number,
  tooLarge: () => Error = () => new Error(`larger than ${maxBytes} bytes, the limit of a remote document`),
): Promise<string> {
  if (declaredBytes !== undefined && declaredBytes > maxBytes) {
    await body[Symbol.asyncIterator]().return?.(); // frees the connection: the body is never read
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  // Leaving the loop by a throw cancels the body (a web stream) or destroys it (a Node stream).
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
