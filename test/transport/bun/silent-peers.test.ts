import { expect, test } from "bun:test";
import { SilentPeers } from "../../../src/transport/bun/silent-peers.ts";

function socket() {
  return {
    data: { heardAt: 0 },
    pings: 0,
    terminated: false,
    ping() {
      this.pings++;
    },
    terminate() {
      this.terminated = true;
    },
  };
}

test("a socket silent for half the idle timeout is pinged at each sweep, and cut once silent for all of it; one heard from is not", () => {
  let now = 1_000;
  const peers = new SilentPeers<ReturnType<typeof socket>>(8_000, () => now);
  const silent = socket();
  const talking = socket();
  peers.opened(silent);
  peers.opened(talking);
  now += 3_999;
  peers.sweep();
  expect([silent.pings, silent.terminated]).toEqual([0, false]);
  now += 1;
  peers.sweep();
  expect([silent.pings, silent.terminated]).toEqual([1, false]);
  peers.heard(talking);
  now += 3_999;
  peers.sweep();
  expect([silent.pings, silent.terminated]).toEqual([2, false]);
  now += 1;
  peers.sweep();
  expect(silent.terminated).toBe(true);
  expect(peers.size).toBe(1);
  // Pinged at 4 s silent, heard from, then pinged again 4 s later: never cut.
  expect([talking.pings, talking.terminated]).toEqual([2, false]);
  peers.closed(talking);
  expect(peers.size).toBe(0);
  peers.stop();
});

test("an idle timeout of 0 watches nothing, and a stopped sweep takes no new socket", () => {
  const off = new SilentPeers<ReturnType<typeof socket>>(0);
  off.opened(socket());
  expect(off.size).toBe(0);
  const peers = new SilentPeers<ReturnType<typeof socket>>(8_000);
  peers.opened(socket());
  peers.opened(socket());
  expect(peers.size).toBe(2);
  peers.stop();
  expect(peers.size).toBe(0);
  peers.opened(socket());
  expect(peers.size).toBe(0);
});
