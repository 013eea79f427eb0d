// The paced (open-model) generator of loadtest/bench/paced.ts against tiny local servers.
import { afterEach, describe, expect, test } from "bun:test";
import { benchBody, runPaced } from "../../loadtest/bench/paced.ts";

let server: ReturnType<typeof Bun.serve> | undefined;

/** A server on a free loopback port answering with `fetch`. */
function serve(fetch: (request: Request) => Response | Promise<Response>) {
  return Bun.serve({ hostname: "127.0.0.1", port: 0, fetch });
}
afterEach(() => {
  server?.stop(true);
  server = undefined;
});

const options = (port: number) => ({
  host: "127.0.0.1",
  port,
  path: "/v1/events",
  headers: { "Content-Type": "application/json" },
  body: benchBody(1),
});

describe("paced load generator", () => {
  test("keeps the rate and times each request from its scheduled slot, waits included", async () => {
    let requests = 0;
    let stalls = 0;
    server = serve(async (request) => {
      await request.arrayBuffer();
      if (++requests % 100 === 0) {
        stalls++;
        await Bun.sleep(5);
      }
      return new Response("{}", { status: 202 });
    });
    // One connection at 1 ms intervals: the requests due during a 5 ms stall queue behind it.
    const { result, latenciesMs } = await runPaced({
      ...options(server.port as number),
      ratePerSec: 1000,
      durationSec: 1,
      connections: 1,
    });
    expect(result.completed).toBe(1000);
    expect(result.non2xx).toBe(0);
    expect(stalls).toBe(10);
    // Each stall holds back the next ~4 slots; timed from their send they would look fast.
    expect(result.waits).toBeGreaterThanOrEqual(3 * stalls);
    const slow = latenciesMs.filter((ms) => ms >= 2).length;
    expect(slow).toBeGreaterThanOrEqual(3 * stalls);
    expect(result.maxMs).toBeGreaterThanOrEqual(5);
  });

  test("sends every request of a 5,000 req/s schedule over a pool of connections", async () => {
    server = serve(async (request) => {
      await request.arrayBuffer();
      return new Response("{}", { status: 202 });
    });
    const { result } = await runPaced({
      ...options(server.port as number),
      body: benchBody(100),
      ratePerSec: 5000,
      durationSec: 1,
      connections: 16,
    });
    expect(result.completed).toBe(5000);
    // The rate it reaches depends on the machine: the benchmark reports it, a functional test does not bound it.
    expect(JSON.parse(benchBody(100))).toHaveLength(100);
  });

  test("counts non-2xx answers", async () => {
    server = serve(() => new Response("no", { status: 401 }));
    const { result } = await runPaced({
      ...options(server.port as number),
      ratePerSec: 200,
      durationSec: 0.25,
      connections: 2,
    });
    expect(result.non2xx).toBe(50);
  });

  test("reports requests still unanswered after the drain timeout as unfinished", async () => {
    let requests = 0;
    server = serve(async (request) => {
      await request.arrayBuffer();
      if (++requests === 3) await Bun.sleep(2000);
      return new Response("{}", { status: 202 });
    });
    const { result } = await runPaced({
      ...options(server.port as number),
      ratePerSec: 100,
      durationSec: 0.1,
      connections: 2,
      drainTimeoutMs: 200,
    });
    expect(result.unfinished).toBe(1);
    expect(result.completed).toBe(9);
  });

  test("fails loudly on a response it cannot frame (no Content-Length)", async () => {
    // A raw server: Bun.serve would add the Content-Length itself.
    const listener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (socket) => void socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nx") },
    });
    try {
      await expect(
        runPaced({ ...options(listener.port), ratePerSec: 100, durationSec: 0.1, connections: 1 }),
      ).rejects.toThrow(/without Content-Length/);
    } finally {
      listener.stop(true);
    }
  });
});
