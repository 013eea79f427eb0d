import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

/** A raw TCP client: what we send is exactly what the gateway reads. */
class RawClient {
  private readonly socket: Socket;
  private received = "";
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.socket = connect(port, "127.0.0.1");
    this.socket.setEncoding("latin1");
    this.socket.on("data", (chunk: string) => {
      this.received += chunk;
    });
    this.socket.on("error", () => {});
    this.closed = new Promise((resolve) => this.socket.on("close", () => resolve()));
  }

  write(text: string): void {
    this.socket.write(text, "latin1");
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Everything received once the server closed the connection, or after `timeoutMs`. */
  async receivedWithin(timeoutMs: number): Promise<{ text: string; closed: boolean }> {
    const closed = await Promise.race([this.closed.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    return { text: this.received, closed };
  }
}

/** Lines of the metrics exposition for `gateway_http_requests_total`. */
async function requestCounts(gateway: RunningGateway): Promise<string[]> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return text.split("\n").filter((line) => line.startsWith("gateway_http_requests_total{"));
}

describe.each(RUNTIMES)("HTTP edge cases on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, LOG_LEVEL: "debug" });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("a bad percent-encoding in a path is a 400", async () => {
    const response = await fetch(`${gateway.url}/v1/channels/%E0%A4%A/events`, {
      headers: { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toBe("bad_request");
    expect(gateway.logs.filter((line) => line.level === "error")).toEqual([]);
  });

  test("an upload the client abandons is counted as 499 and logged at debug, never as 500", async () => {
    const client = new RawClient(gateway.port);
    client.write(
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await token("acme", ["ingest"])}\r\n` +
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{",
    );
    await Bun.sleep(200);
    client.destroy();
    let counts: string[] = [];
    for (let attempt = 0; attempt < 30; attempt++) {
      counts = await requestCounts(gateway);
      if (counts.some((line) => line.includes('status="499"'))) break;
      await Bun.sleep(100);
    }
    expect(counts).toContain('gateway_http_requests_total{route="/v1/events",method="POST",status="499"} 1');
    expect(counts.filter((line) => line.includes('status="5'))).toEqual([]);
    expect(gateway.logs.filter((line) => line.level === "error")).toEqual([]);
    expect(gateway.logs.some((line) => line.level === "debug" && line.code === "client_closed_request")).toBe(
      true,
    );
  });
});
