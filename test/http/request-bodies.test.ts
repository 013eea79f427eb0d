import { describe, expect, test } from "bun:test";
import { GatewayError } from "../../src/domain/errors.ts";
import { RequestBodies } from "../../src/http/request-bodies.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

/** A request whose body arrives when `arrive` is called; `length` is its Content-Length (none: chunked). */
function upload(length?: number) {
  const body = Promise.withResolvers<Uint8Array>();
  const request = {
    header: (name: string) =>
      name === "content-length" && length !== undefined ? String(length) : undefined,
    body: () => body.promise,
  } as unknown as HttpRequest;
  return { request, arrive: () => body.resolve(new Uint8Array(length ?? 0)), fail: body.reject };
}

async function refusal(reading: Promise<unknown>): Promise<GatewayError> {
  const error = await reading.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  if (!(error instanceof GatewayError)) throw new Error(`not refused: ${String(error)}`);
  return error;
}

describe("RequestBodies", () => {
  test("a tenant holding uploads gets 503 overloaded past half the bound, and another tenant still gets in", async () => {
    const bodies = new RequestBodies(1000, 400);
    const first = upload(300);
    const held = bodies.read(first.request, "hog");
    const error = await refusal(bodies.read(upload(300).request, "hog"));
    expect(error.status).toBe(503);
    expect(error.code).toBe("overloaded");
    expect(error.headers["retry-after"]).toBe("1");
    const other = upload(300);
    const otherRead = bodies.read(other.request, "small");
    expect(bodies.size).toEqual({ bytes: 600, tenants: 2 });
    first.arrive();
    other.arrive();
    await Promise.all([held, otherRead]);
    expect(bodies.size).toEqual({ bytes: 0, tenants: 0 });
  });

  test("the instance bound refuses whoever would pass it, a tenant holding nothing too", async () => {
    const bodies = new RequestBodies(1000, 400);
    const reads = ["a", "b", "c"].map((tenant) => bodies.read(upload(300).request, tenant));
    const error = await refusal(bodies.read(upload(300).request, "d"));
    expect(error.code).toBe("overloaded");
    expect(bodies.size).toEqual({ bytes: 900, tenants: 3 });
    for (const read of reads) read.catch(() => {});
  });

  test("with more tenants holding, a tenant's share is the bound divided among them", async () => {
    const bodies = new RequestBodies(1200, 400);
    for (const tenant of ["a", "b", "c"]) bodies.read(upload(200).request, tenant);
    // 200 + 200 > 1200 / 3: refused, though the instance holds 600 of 1200.
    expect((await refusal(bodies.read(upload(201).request, "a"))).code).toBe("overloaded");
    bodies.read(upload(200).request, "a");
    expect(bodies.size).toEqual({ bytes: 800, tenants: 3 });
  });

  test("a body without Content-Length counts for MAX_BODY_BYTES, one past it for MAX_BODY_BYTES, and a failed read frees its bytes", async () => {
    const bodies = new RequestBodies(1000, 400);
    const chunked = upload();
    const reading = bodies.read(chunked.request, "a");
    expect(bodies.size.bytes).toBe(400);
    chunked.fail(new Error("client went away"));
    await reading.catch(() => {});
    expect(bodies.size).toEqual({ bytes: 0, tenants: 0 });
    bodies.read(upload(5000).request, "a");
    expect(bodies.size.bytes).toBe(400);
  });

  test("a body() that throws at once rejects the read and frees its bytes", async () => {
    const bodies = new RequestBodies(1000, 400);
    const request = {
      header: (name: string) => (name === "content-length" ? "300" : undefined),
      body: () => {
        throw new Error("the connection was already closed");
      },
    } as unknown as HttpRequest;
    await expect(bodies.read(request, "a")).rejects.toThrow("the connection was already closed");
    expect(bodies.size).toEqual({ bytes: 0, tenants: 0 });
  });

  test("the drain cuts the bodies still arriving halfway to its deadline with 503 draining, and refuses later ones", async () => {
    const bodies = new RequestBodies(1000, 400);
    const quick = upload(100);
    const stalled = upload(100);
    const quickRead = bodies.read(quick.request, "a");
    const stalledRead = bodies.read(stalled.request, "b");
    const started = Date.now();
    const cutting = bodies.cutAtDrain(started + 400);
    quick.arrive();
    expect((await quickRead).byteLength).toBe(100);
    await cutting;
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    const error = await refusal(stalledRead);
    expect(error.code).toBe("draining");
    expect(error.status).toBe(503);
    expect(bodies.size).toEqual({ bytes: 0, tenants: 0 });
    expect((await refusal(bodies.read(upload(10).request, "c"))).code).toBe("draining");
  });

  test("with nothing arriving, the drain does not wait", async () => {
    const bodies = new RequestBodies(1000, 400);
    const started = Date.now();
    await bodies.cutAtDrain(started + 10_000);
    // Not halfway to the deadline (5 s); the bound leaves room for a loaded machine's pauses (it was 100 ms).
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
