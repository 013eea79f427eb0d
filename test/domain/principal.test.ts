import { describe, expect, test } from "bun:test";
import { GatewayError } from "../../src/domain/errors.ts";
import {
  channelAllowed,
  isChannelPattern,
  type Principal,
  requireScope,
  requireUnexpired,
} from "../../src/domain/principal.ts";

function principal(fields: Partial<Principal> = {}): Principal {
  return {
    subject: "alice",
    tenant: "acme",
    scopes: new Set(["ingest"]),
    channels: undefined,
    expiresAt: Date.now() + 60_000,
    ...fields,
  };
}

describe("requireScope", () => {
  test("passes when the scope is granted", () => {
    expect(() => requireScope(principal(), "ingest")).not.toThrow();
  });

  test("a missing scope is a 403 naming the scope", () => {
    let thrown: unknown;
    try {
      requireScope(principal(), "publish");
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(GatewayError);
    const error = thrown as GatewayError;
    expect(error.code).toBe("forbidden");
    expect(error.status).toBe(403);
    expect(error.message).toBe("token lacks scope publish");
    expect(error.headers["www-authenticate"]).toBe(
      'Bearer error="insufficient_scope", error_description="token lacks scope publish", scope="publish"',
    );
  });
});

describe("requireUnexpired", () => {
  test("a token past its exp is a 401 with the invalid_token challenge", () => {
    let thrown: unknown;
    try {
      requireUnexpired(principal({ expiresAt: 1000 }), 1000);
    } catch (error) {
      thrown = error;
    }
    const error = thrown as GatewayError;
    expect(error.status).toBe(401);
    expect(error.headers["www-authenticate"]).toBe(
      'Bearer error="invalid_token", error_description="token expired"',
    );
  });
});

describe("channelAllowed", () => {
  test("no channels claim allows every channel", () => {
    expect(channelAllowed(principal(), "anything.at.all")).toBe(true);
  });

  test("an exact pattern allows only that channel", () => {
    const limited = principal({ channels: ["orders"] });
    expect(channelAllowed(limited, "orders")).toBe(true);
    expect(channelAllowed(limited, "orders.eu")).toBe(false);
    expect(channelAllowed(limited, "order")).toBe(false);
  });

  test("'orders.*' allows the sub-channels of orders, not orders itself", () => {
    const limited = principal({ channels: ["orders.*"] });
    expect(channelAllowed(limited, "orders.eu")).toBe(true);
    expect(channelAllowed(limited, "orders.eu.west")).toBe(true);
    expect(channelAllowed(limited, "orders")).toBe(false);
    expect(channelAllowed(limited, "ordersX")).toBe(false);
  });

  test("a trailing '*' is a prefix match", () => {
    const limited = principal({ channels: ["orders*"] });
    expect(channelAllowed(limited, "orders")).toBe(true);
    expect(channelAllowed(limited, "orders-2")).toBe(true);
    expect(channelAllowed(limited, "billing")).toBe(false);
  });

  test("'*' allows every channel", () => {
    expect(channelAllowed(principal({ channels: ["*"] }), "billing")).toBe(true);
  });

  test("any pattern of the list may match", () => {
    const limited = principal({ channels: ["billing", "orders.*"] });
    expect(channelAllowed(limited, "billing")).toBe(true);
    expect(channelAllowed(limited, "orders.eu")).toBe(true);
    expect(channelAllowed(limited, "shipping")).toBe(false);
  });

  test("an empty list allows nothing", () => {
    const none = principal({ channels: [] });
    expect(channelAllowed(none, "orders")).toBe(false);
    expect(channelAllowed(none, "")).toBe(false);
  });

  test("RegExp characters and a '*' before the end are literal", () => {
    expect(channelAllowed(principal({ channels: ["a+b"] }), "aab")).toBe(false);
    expect(channelAllowed(principal({ channels: ["a+b"] }), "a+b")).toBe(true);
    expect(channelAllowed(principal({ channels: ["or*ders"] }), "orXders")).toBe(false);
  });

  test("patterns are compiled once per principal", () => {
    const channels = ["orders"];
    const limited = principal({ channels });
    expect(channelAllowed(limited, "billing")).toBe(false);
    // A later change to the list is not seen: the first call's compiled matcher is reused.
    channels.push("billing");
    expect(channelAllowed(limited, "billing")).toBe(false);
    expect(channelAllowed(principal({ channels }), "billing")).toBe(true);
  });
});

describe("isChannelPattern", () => {
  test("accepts names with at most a trailing '*'", () => {
    for (const pattern of ["orders", "orders.*", "orders*", "*"])
      expect(isChannelPattern(pattern)).toBe(true);
  });

  test("rejects empty patterns and a '*' anywhere but the end", () => {
    for (const pattern of ["", "*.orders", "or*ders", "**", "orders.**"]) {
      expect(isChannelPattern(pattern)).toBe(false);
    }
  });
});
