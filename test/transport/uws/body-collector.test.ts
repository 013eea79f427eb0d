import { describe, expect, test } from "bun:test";
import { BodyCollector } from "../../../src/transport/uws/body-collector.ts";

/** A uWS response as the collector sees it: `data` hands it the next chunk. */
function response() {
  let handler: ((chunk: ArrayBuffer, isLast: boolean) => void) | undefined;
  return {
    res: {
      onData: (next: typeof handler) => {
        handler = next;
      },
    } as never,
    data: (text: string, isLast: boolean) =>
      handler?.(new TextEncoder().encode(text).buffer as ArrayBuffer, isLast),
  };
}

describe("BodyCollector", () => {
  test("collects the chunks into the body, and refuses one past the limit", async () => {
    const { res, data } = response();
    const body = Promise.withResolvers<Uint8Array>();
    new BodyCollector(res, 10, 6, body.resolve, body.reject);
    data("abc", false);
    data("def", true);
    expect(new TextDecoder().decode(await body.promise)).toBe("abcdef");
    const over = response();
    const refused = Promise.withResolvers<Uint8Array>();
    new BodyCollector(over.res, 4, undefined, refused.resolve, refused.reject);
    over.data("abcdef", false);
    await expect(refused.promise).rejects.toMatchObject({ code: "payload_too_large" });
  });

  test("dropped (answered without it), the buffer goes at once and the rest of the body is ignored", async () => {
    const { res, data } = response();
    const body = Promise.withResolvers<Uint8Array>();
    const collector = new BodyCollector(res, 1 << 20, 60 * 1024, body.resolve, body.reject);
    data("{", false);
    collector.drop();
    expect(collector.collecting).toBe(false);
    await expect(body.promise).rejects.toThrow("answered before its body came");
    data("x".repeat(2 << 20), true);
  });
});
