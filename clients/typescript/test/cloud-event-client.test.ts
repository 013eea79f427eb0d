import { describe, expect, test } from "bun:test";
import { CloudEvent } from "cloudevents";
import { CloudEventClient, type DeliveryFailure, type GatewayEvents } from "../src/index.js";

interface Sent {
  headers: Record<string, string>;
  body: string;
}

function recordingFetch(answers: Array<() => Response>) {
  const sent: Sent[] = [];
  let call = 0;
  const fetch = async (_url: string, init: RequestInit) => {
    const headers = init.headers as Record<string, string>;
    let body = init.body as string | Uint8Array;
    if (headers["content-encoding"] === "gzip") body = Bun.gunzipSync(body as Uint8Array<ArrayBuffer>);
    sent.push({ headers, body: typeof body === "string" ? body : new TextDecoder().decode(body) });
    return (answers[Math.min(call++, answers.length - 1)] as () => Response)();
  };
  return { fetch, sent };
}

const accepted = () => Response.json({ accepted: 1, rejected: 0, errors: [] }, { status: 202 });

describe("CloudEventClient", () => {
  test("batches go as application/cloudevents-batch+json arrays, each event with specversion and a stable id", async () => {
    const { fetch, sent } = recordingFetch([
      () => new Response("{}", { status: 503, headers: { "retry-after": "0" } }),
      accepted,
    ]);
    const events = new CloudEventClient({
      url: "http://gateway.test",
      token: "t",
      fetch,
      maxBatchRecords: 2,
    });
    const at = new Date("2026-12-04T10:00:00.000Z");
    const first = events.enqueue({ type: "click", source: "/web", time: at, data: { element: "a" } });
    events.enqueue({
      type: "click",
      source: "/web",
      id: "mine",
      subject: "cart",
      partitionkey: "k",
      data: { element: "b" },
    });
    events.enqueue({ type: "click", source: "/web", data: { element: "c" } });
    await events.flush();
    expect(sent.map((request) => request.headers["content-type"])).toEqual([
      "application/cloudevents-batch+json",
      "application/cloudevents-batch+json",
      "application/cloudevents-batch+json",
    ]);
    // The 503'd batch went again byte for byte (same ids), then the last event alone.
    expect(sent[1]?.body).toBe(sent[0]?.body);
    const batch = JSON.parse(sent[0]?.body ?? "[]");
    expect(batch).toEqual([
      {
        type: "click",
        source: "/web",
        time: "2026-12-04T10:00:00.000Z",
        data: { element: "a" },
        specversion: "1.0",
        id: first,
      },
      {
        type: "click",
        source: "/web",
        id: "mine",
        subject: "cart",
        partitionkey: "k",
        data: { element: "b" },
        specversion: "1.0",
      },
    ]);
    expect(JSON.parse(sent[2]?.body ?? "[]")).toHaveLength(1);
    expect(events.stats).toMatchObject({ accepted: 3, retries: 1 });
    await events.close();
  });

  test("events of the cloudevents SDK go with their attributes and extensions", async () => {
    const { fetch, sent } = recordingFetch([accepted]);
    const events = new CloudEventClient({ url: "http://gateway.test", token: "t", fetch });
    const event = new CloudEvent({
      type: "click",
      source: "/sdk",
      id: "sdk-1",
      region: "eu",
      data: { element: "x" },
    });
    expect(events.enqueue(event)).toBe("sdk-1");
    await events.flush();
    expect(JSON.parse(sent[0]?.body ?? "[]")[0]).toMatchObject({
      specversion: "1.0",
      type: "click",
      source: "/sdk",
      id: "sdk-1",
      region: "eu",
      data: { element: "x" },
    });
    await events.close();
  });

  test("events that can never be sent are refused at once; per-event refusals reach onError", async () => {
    const { fetch } = recordingFetch([
      () =>
        Response.json(
          { accepted: 0, rejected: 1, errors: [{ index: 0, reason: "unknown type", code: "unknown_type" }] },
          { status: 422 },
        ),
    ]);
    const failures: DeliveryFailure[] = [];
    const events = new CloudEventClient({
      url: "http://gateway.test",
      token: "t",
      fetch,
      onError: (f) => failures.push(f),
    });
    expect(() => events.enqueue({ type: "click", data: { element: "a" } } as never)).toThrow("source");
    expect(() => events.enqueue({ type: "click", source: "/s", data: [1] } as never)).toThrow("data object");
    expect(() =>
      events.enqueue({ type: "click", source: "/s", specversion: "0.3", data: {} } as never),
    ).toThrow("1.0");
    const id = events.enqueue({ type: "nope", source: "/s", data: {} });
    await events.flush();
    expect(failures).toEqual([
      {
        kind: "rejected",
        status: 422,
        message: "HTTP 422",
        records: [{ id: id as string, reason: "unknown type" }],
      },
    ]);
    await events.close();
  });

  test("typed by GatewayEvents like EventClient", () => {
    const events = new CloudEventClient<GatewayEvents>({
      url: "http://gateway.test",
      token: "t",
      fetch: async () => accepted(),
    });
    events.enqueue({ type: "click", source: "/web", data: { element: "buy" } });
    // @ts-expect-error an unknown type does not compile
    expect(() => events.enqueue({ type: "clack", source: "/web", data: {} })).not.toThrow();
    void events.close({ timeoutMs: 0 });
  });
});
