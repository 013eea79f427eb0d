import { describe, expect, test } from "bun:test";
import { TenantShares } from "../../../src/infra/delivery/tenant-shares.ts";

describe("TenantShares", () => {
  test("below half full nobody is refused, whatever a tenant holds", () => {
    const shares = new TenantShares(100, 1_000_000);
    const a = shares.asking("a", 0);
    shares.add(a, 40, 400);
    shares.asking("b", 0);
    expect(shares.refuses(a, 10, 100, 40, 400)).toBe(false);
    expect(shares.refuses(a, 11, 110, 40, 400)).toBe(true);
  });

  test("the share is the queue divided by the tenants that asked in the last 5–10 s, refused ones included", () => {
    const shares = new TenantShares(90, 1_000_000);
    const a = shares.asking("a", 0);
    shares.add(a, 40, 400);
    shares.asking("b", 1_000);
    // Two sending: 45 each.
    expect(shares.refuses(a, 5, 50, 50, 500)).toBe(false);
    shares.asking("c", 2_000);
    // Three: 30 each.
    expect(shares.refuses(a, 5, 50, 50, 500)).toBe(true);
    // The next window still counts the last one's three; the one after that only who asked in it.
    expect(shares.asking("a", 6_000)).toBe(a);
    expect(shares.refuses(a, 5, 50, 50, 500)).toBe(true);
    shares.asking("a", 11_000);
    expect(shares.refuses(a, 5, 50, 50, 500)).toBe(false);
  });

  test("bytes count as records do", () => {
    const shares = new TenantShares(1_000, 1_000);
    const a = shares.asking("a", 0);
    shares.add(a, 1, 400);
    shares.asking("b", 0);
    expect(shares.refuses(a, 1, 101, 2, 500)).toBe(true);
    expect(shares.refuses(a, 1, 100, 2, 500)).toBe(false);
  });

  test("a holding lives while its tenant has records queued, and the names kept per window are bounded", () => {
    const shares = new TenantShares(100, 1_000_000);
    const a = shares.asking("a", 0);
    shares.add(a, 3, 30);
    expect(shares.asking("a", 0)).toBe(a);
    shares.release(a, 2, 20);
    expect(shares.tenantsHolding).toBe(1);
    shares.release(a, 1, 10);
    expect(shares.tenantsHolding).toBe(0);
    expect(shares.asking("a", 0)).not.toBe(a);
    for (let n = 0; n < 20_000; n++) shares.asking(`t${n}`, 0);
    expect(shares.tenantsHolding).toBe(0);
    const b = shares.asking("b", 0);
    shares.add(b, 1, 10);
    // 10,000 names remembered: a share of 100 / 10,000 records.
    expect(shares.refuses(b, 1, 10, 60, 600)).toBe(true);
  });
});
