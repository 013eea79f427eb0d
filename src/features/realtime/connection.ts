import { randomUUID } from "node:crypto";
import { broadcastTopic, CHANNEL_PATTERN, channelTopic } from "../../domain/channel.ts";
import { CLOSE, GatewayError, isGatewayError } from "../../domain/errors.ts";
import { channelAllowed, type Principal, refreshRefusal } from "../../domain/principal.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Publish } from "../../ports/publish.ts";
import type { WsPeer } from "../../ports/transport.ts";
import type { ChannelHistory, HistoryEvent } from "./history.ts";
import { presenceTopic } from "./presence.ts";
import { type PublishFrame, parseClientFrame } from "./protocol.ts";
import { isPending, type PendingResume, type Resume, type ResumeOutcome } from "./resume.ts";

/** Close codes of the protocol (the catalogue in domain/errors.ts says what each means). */
export { CLOSE };

/**
 * Frames held while a token is verified: a dashboard's subscribes sent on open
 * (a token in the URL), never a pending socket's worth of payloads.
 */
const MAX_FRAMES_DURING_AUTH = 64;
const MAX_BYTES_DURING_AUTH = 16 * 1024;
/** Publishes of one connection waiting for Kafka's acknowledgement; past it a publish is refused, not queued. */
export const MAX_PUBLISHES_IN_FLIGHT = 32;

/** retryAfterMs of a subscribe refused for the instance's or the tenant's distinct channels. */
const CHANNEL_CAP_RETRY_MS = 5000;

export type Peer = WsPeer<Connection>;

/** Receives each live frame of a topic, with its offset in the partition. */
export type LiveTap = (frame: string, offset: bigint) => void;

/** A subscribe whose replay is read from the log: the channel's live frames wait here until it is sent. */
interface PendingReplay {
  untap: () => void;
  held: Array<{ frame: string; offset: bigint }>;
  heldBytes: number;
}

export interface ConnectionLimits {
  authTimeoutMs: number;
  maxSubscriptions: number;
  maxMessagesPerSec: number;
  /** How long before its token's exp a socket gets `token_expiring`; 0: never. */
  tokenExpiryWarningMs: number;
}

/** What a connection needs from the registry that holds it (the hub). */
export interface ConnectionHost {
  readonly limits: ConnectionLimits;
  readonly history: ChannelHistory;
  readonly resume: Resume;
  readonly metrics: Metrics;
  /** Per-IP connect rate limit; rejects with a 429 GatewayError when exceeded. */
  admit(ip: string): Promise<void>;
  /** The principal of a token allowed to subscribe; rejects otherwise. */
  verify(token: string): Promise<Principal>;
  /** Takes an authenticated slot of the instance and of `tenant` in one step, or says which cap is full. */
  claimSlots(tenant: string): GatewayError | undefined;
  /** Keeps the count of local subscribers per engine topic. */
  countTopic(topic: string, delta: number): void;
  /**
   * Why a channel topic no socket here subscribes to yet cannot be one more (the instance's or the
   * tenant's distinct channels at their cap), if it cannot.
   */
  channelRoom(topic: string): string | undefined;
  /** A subject joined (1) or left (-1) a channel, for presence. */
  presence(channelKey: string, subject: string, delta: 1 | -1): void;
  /**
   * This connection started (1) or stopped (-1) asking for a channel's join
   * and leave events; false when a start is refused (too many channels watched).
   */
  watchPresence(channelKey: string, delta: 1 | -1): boolean;
  /** Hands `listener` every live frame of `topic` until the returned function is called. */
  tap(topic: string, listener: LiveTap): () => void;
  /** A `publish` frame's message, through the fan-out bus (as `POST /v1/publish`). */
  publish: Publish;
}

/**
 * One WebSocket's state machine and the timers it owns. It opens
 * authenticating (auth deadline running, frames held while a token is
 * verified), becomes authenticated once its token is verified and the hub
 * gave it a slot, and ends with `closed`, which frees everything it took.
 */
export class Connection {
  readonly id = randomUUID();
  principal: Principal | undefined;
  readonly channels = new Set<string>();
  /**
   * Per subscribed channel, the position the client holds once subscribed (the
   * `subscribed` frame's, or after a resume the last event replayed, else its
   * `since`): a `ping` reports it while no event of the channel is kept, so a
   * quiet channel's `lastEventIds` entry is that position, not null.
   */
  private readonly subscribedAt = new Map<string, string | null>();
  /** Subscribed channels whose join and leave events this connection asked for (`presence: true`). */
  private readonly presenceChannels = new Set<string>();
  /** Per channel being subscribed, whether its subscribe asked for join and leave events. */
  private readonly presenceAsked = new Map<string, boolean>();
  /** Channels whose subscribe waits on a read of the log (not yet in `channels`). */
  private readonly replays = new Map<string, PendingReplay>();
  private peer: Peer | undefined;
  private closing = false;
  /** From `open` until `closed`: async outcomes arriving outside that window are dropped. */
  private live = false;
  /** Frames that arrived while a token was being verified; replayed once it is (bounded). */
  private framesDuringAuth: Array<string | undefined> | undefined;
  /** Frames past the hold's bound were ignored: said with one error frame once the token is verified. */
  private framesDroppedDuringAuth = false;
  private authTimer: ReturnType<typeof setTimeout> | undefined;
  /** A first token is being verified. */
  private verifying = false;
  /** The `expiresAt` of the token `token_expiring` was sent for: once per token. */
  private expiryWarnedFor: number | undefined;
  /**
   * Inbound frames in the current one-second window, for the per-connection message rate; the window
   * opened at this performance.now() (monotonic: a wall clock stepped back would hold it open, muting the socket).
   */
  private windowStart = performance.now();
  private windowMessages = 0;
  /** Publishes waiting for Kafka's acknowledgement (at most MAX_PUBLISHES_IN_FLIGHT). */
  private publishing = 0;

  constructor(
    readonly ip: string,
    /** Token from the Authorization header or ?token=, verified right after open. */
    private upgradeToken: string | undefined,
    private readonly host: ConnectionHost,
  ) {
    if (upgradeToken !== undefined) this.framesDuringAuth = [];
  }

  /** The engine opened the socket; from now on frames can be sent. */
  attach(peer: Peer): void {
    this.peer = peer;
  }

  /** Admitted by the hub: starts the auth deadline, the connect rate check and the upgrade token's check. */
  start(): void {
    this.live = true;
    this.authTimer = setTimeout(() => {
      // A token came in time but is not verified yet (the JWKS endpoint is slow): not the client's fault.
      if (this.verifying || this.upgradeToken !== undefined) {
        this.send({
          type: "error",
          code: "unavailable",
          message: "token could not be verified in time",
          retryAfterMs: 1000,
        });
        this.close(CLOSE.tryAgainLater, "token not verified in time");
        return;
      }
      this.send({ type: "error", code: "unauthorized", message: "authenticate within the deadline" });
      this.close(CLOSE.unauthorized, "authentication timeout");
    }, this.host.limits.authTimeoutMs);
    this.host.admit(this.ip).then(
      () => {
        const token = this.upgradeToken;
        this.upgradeToken = undefined;
        if (token !== undefined && this.live) this.authenticate(token);
      },
      (error: unknown) => {
        // Closed as a full tenant closes (reason = code), naming which budget refused, with its Retry-After.
        if (this.live)
          this.refuse(
            new GatewayError(
              "rate_limited",
              "too many connection attempts from this address",
              isGatewayError(error) ? error.headers : {},
            ),
          );
      },
    );
  }

  /** `text` is undefined for a binary frame that is not UTF-8: a `bad_frame`, in its turn. */
  receive(text: string | undefined): void {
    const waiting = this.framesDuringAuth;
    if (waiting) {
      const held = waiting.reduce((bytes, frame) => bytes + (frame?.length ?? 0), text?.length ?? 0);
      if (waiting.length < MAX_FRAMES_DURING_AUTH && held <= MAX_BYTES_DURING_AUTH) waiting.push(text);
      else this.framesDroppedDuringAuth = true;
      return;
    }
    if (!this.withinMessageRate()) return;
    const frame = parseClientFrame(text);
    if ("error" in frame) {
      const ref = frame.ref === undefined ? {} : { ref: frame.ref };
      this.send({ type: "error", code: "bad_frame", message: frame.error, ...ref });
      return;
    }
    const principal = this.principal;
    if (!principal) {
      if (frame.type === "auth") this.authenticate(frame.token);
      else {
        this.send({ type: "error", code: "unauthorized", message: "authenticate first" });
        this.close(CLOSE.unauthorized, "unauthorized");
      }
      return;
    }
    switch (frame.type) {
      case "auth":
        this.refresh(frame.token);
        return;
      case "subscribe":
        this.subscribe(principal, frame.channel, frame.since, frame.presence);
        return;
      case "unsubscribe":
        this.unsubscribe(frame.channel);
        this.send({ type: "unsubscribed", channel: frame.channel });
        return;
      case "ping":
        this.send({ type: "pong" });
        return;
      case "publish":
        this.publish(principal, frame);
        return;
    }
  }

  /** The socket closed: stops the auth deadline and drops this connection's channel subscriptions. */
  closed(): void {
    this.live = false;
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = undefined;
    this.framesDuringAuth = undefined;
    for (const channel of [...this.replays.keys()]) this.cancelReplay(channel);
    for (const channel of [...this.channels]) this.unsubscribe(channel);
  }

  /**
   * An error frame and 1013 ("try again later"): the socket opened or authenticated past a cap. The
   * frame's `retryAfterMs` is the Retry-After an upgrade or event stream refused by that cap gets.
   */
  refuse(error: GatewayError): void {
    const retryAfter = error.headers["retry-after"];
    this.send({
      type: "error",
      code: error.code,
      message: error.message,
      ...(retryAfter === undefined ? {} : { retryAfterMs: Number(retryAfter) * 1000 }),
    });
    this.close(CLOSE.tryAgainLater, error.code);
  }

  /**
   * Run by the sweep each second and right after a token is taken: closes
   * 4001 once the token expired, and sends `token_expiring` once per token
   * when its exp is within `tokenExpiryWarningMs`, so the client can refresh first.
   */
  checkExpiry(now: number): void {
    const principal = this.principal;
    if (!principal) return;
    if (principal.expiresAt <= now) {
      this.send({ type: "error", code: "unauthorized", message: "token expired" });
      this.close(CLOSE.unauthorized, "token expired");
      return;
    }
    const warningMs = this.host.limits.tokenExpiryWarningMs;
    if (
      warningMs > 0 &&
      this.expiryWarnedFor !== principal.expiresAt &&
      principal.expiresAt - now <= warningMs
    ) {
      this.expiryWarnedFor = principal.expiresAt;
      this.send({ type: "token_expiring", expiresAt: principal.expiresAt });
    }
  }

  /**
   * `ping` frame with the last event id of each subscribed channel (the newest kept, else the
   * position the client holds since it subscribed), so a client can detect a gap.
   */
  ping(): void {
    const principal = this.principal;
    if (!principal) return;
    const lastEventIds: Record<string, string | null> = {};
    for (const channel of this.channels) {
      lastEventIds[channel] =
        this.host.history.lastId(channelTopic(principal.tenant, channel)) ??
        this.subscribedAt.get(channel) ??
        null;
    }
    this.send({ type: "ping", lastEventIds });
  }

  bufferedAmount(): number {
    return this.peer?.bufferedAmount() ?? 0;
  }

  /** Asks the engine to close, once: a later close (a sweep, the drain) finds it already closing. */
  close(code: number, reason: string): void {
    if (this.closing || this.peer === undefined) return;
    this.closing = true;
    this.peer.close(code, reason);
  }

  /** `close` was called; the engine's close event (`closed`) may come later. */
  get isClosing(): boolean {
    return this.closing;
  }

  send(frame: Record<string, unknown>): void {
    this.sendText(JSON.stringify(frame));
  }

  private sendText(text: string): void {
    const metrics = this.host.metrics;
    if ((this.peer?.send(text) ?? "dropped") === "dropped") metrics.wsMessagesDropped.inc();
    else {
      metrics.wsMessagesSent.inc();
      metrics.wsBytesSent.inc(text.length);
    }
  }

  /**
   * Verifies a token (from the upgrade or an auth frame); success sends
   * `connected`, a bad token closes 4001, keys that cannot be fetched 1013.
   */
  private authenticate(token: string): void {
    // Frames that arrive while the token is checked wait for the outcome instead of being refused.
    this.framesDuringAuth ??= [];
    this.verifying = true;
    this.host.verify(token).then(
      (principal) => {
        this.verifying = false;
        if (this.live) this.establish(principal);
      },
      (error) => {
        this.verifying = false;
        if (!this.live) return;
        // The identity provider could not be asked: the token may be fine, so "try again later".
        if (this.sendAuthError(error) === "unavailable")
          this.close(CLOSE.tryAgainLater, "token signing keys unavailable");
        else this.close(CLOSE.unauthorized, "unauthorized");
      },
    );
  }

  /**
   * An `auth` frame on an authenticated socket: a token of the same tenant
   * and subject that expires later replaces the current one, and the
   * subscriptions stay, but for those its `channels` claim no longer allows.
   * A bad token closes 4001; a valid one that cannot replace the current one,
   * or keys that cannot be fetched, leave the socket on its current token.
   */
  private refresh(token: string): void {
    this.host.verify(token).then(
      (next) => {
        const current = this.principal;
        if (!this.live || !current) return;
        const refusal = refreshRefusal(current, next);
        if (refusal) {
          this.send({ type: "error", code: "forbidden", message: refusal });
          return;
        }
        this.principal = next;
        // Subscribed channels and those still waiting on a replay from the log alike.
        for (const channel of new Set([...this.channels, ...this.replays.keys()])) {
          if (channelAllowed(next, channel)) continue;
          this.cancelReplay(channel);
          this.unsubscribe(channel);
          this.send({ type: "unsubscribed", channel, reason: "forbidden" });
        }
        this.send({ type: "refreshed", expiresAt: next.expiresAt });
        this.checkExpiry(Date.now());
      },
      (error) => {
        if (!this.live) return;
        const code = this.sendAuthError(error);
        if (code !== "unavailable" && code !== "forbidden") this.close(CLOSE.unauthorized, "unauthorized");
      },
    );
  }

  /**
   * A `publish` frame, with scope `publish`: `published` once Kafka
   * acknowledged, else an error frame; either echoes the frame's `ref`.
   */
  private publish(principal: Principal, frame: PublishFrame): void {
    const ref = frame.ref === undefined ? {} : { ref: frame.ref };
    const started = performance.now();
    if (!principal.scopes.has("publish")) {
      this.answerPublish(started, {
        type: "error",
        code: "forbidden",
        message: "publish needs a token with scope publish",
        ...ref,
      });
      return;
    }
    if (this.publishing >= MAX_PUBLISHES_IN_FLIGHT) {
      this.answerPublish(started, {
        type: "error",
        code: "rate_limited",
        message: `at most ${MAX_PUBLISHES_IN_FLIGHT} publishes of a connection wait for Kafka`,
        retryAfterMs: 1000,
        ...ref,
      });
      return;
    }
    this.publishing++;
    this.host
      .publish(principal, {
        channel: frame.channel,
        broadcast: frame.broadcast,
        dataJson: frame.dataJson,
        trace: frame.trace,
      })
      .then(
        () => {
          this.publishing--;
          this.answerPublish(started, { type: "published", ...ref });
        },
        (error: unknown) => {
          this.publishing--;
          this.answerPublish(started, { ...publishError(error), ...ref });
        },
      );
  }

  /**
   * Counts and times a publish by its answer's result (`published` or the
   * error code), and sends the answer while the socket is open: a publish
   * Kafka acknowledged after its socket closed still counts as published.
   */
  private answerPublish(started: number, answer: Record<string, unknown>): void {
    const result = answer.type === "published" ? "published" : String(answer.code);
    const metrics = this.host.metrics;
    metrics.wsPublishes.inc({ result });
    metrics.wsPublishDuration.observe({ result }, (performance.now() - started) / 1000);
    if (this.live) this.send(answer);
  }

  /** The error frame for a refused token, with `retryAfterMs` when its keys could not be fetched; returns its code. */
  private sendAuthError(error: unknown): string {
    const code = isGatewayError(error) ? error.code : "unauthorized";
    const frame: Record<string, unknown> = { type: "error", code, message: (error as Error).message };
    if (isGatewayError(error) && code === "unavailable")
      frame.retryAfterMs = Number(error.headers["retry-after"] ?? 1) * 1000;
    this.send(frame);
    return code;
  }

  /**
   * Takes the slots and becomes authenticated in one synchronous step, so
   * verifications that finish in the same tick cannot all pass a cap.
   */
  private establish(principal: Principal): void {
    const full = this.host.claimSlots(principal.tenant);
    if (full) {
      this.refuse(full);
      return;
    }
    this.principal = principal;
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = undefined;
    this.peer?.subscribe(broadcastTopic(principal.tenant));
    this.host.countTopic(broadcastTopic(principal.tenant), 1);
    this.send({ type: "connected", connection: this.id });
    this.checkExpiry(Date.now());
    const waiting = this.framesDuringAuth ?? [];
    this.framesDuringAuth = undefined;
    for (const text of waiting) this.receive(text);
    if (this.framesDroppedDuringAuth) {
      // As the per-second message limit answers: one frame, after those that were handled.
      this.framesDroppedDuringAuth = false;
      this.host.metrics.rateLimited.inc({ scope: "ws_message" });
      this.send({
        type: "error",
        code: "rate_limited",
        message: `too many frames before the token was verified (at most ${MAX_FRAMES_DURING_AUTH} frames or ${MAX_BYTES_DURING_AUTH / 1024} KiB are held): the rest were ignored`,
      });
    }
  }

  private subscribe(
    principal: Principal,
    channel: string,
    since: string | undefined,
    presence: boolean,
  ): void {
    if (!CHANNEL_PATTERN.test(channel)) {
      this.send({ type: "error", code: "bad_channel", channel, message: "invalid channel name" });
      return;
    }
    if (!channelAllowed(principal, channel)) {
      this.send({ type: "error", code: "forbidden", channel, message: "channel not allowed for this token" });
      return;
    }
    const { maxSubscriptions } = this.host.limits;
    // A channel already held, subscribed or still reading its replay, takes no new place when asked again.
    const held = this.channels.has(channel) || this.replays.has(channel);
    if (!held && this.subscriptionCount() >= maxSubscriptions) {
      this.send({
        type: "error",
        code: "too_many_subscriptions",
        channel,
        message: `at most ${maxSubscriptions}`,
      });
      return;
    }
    // A place may come back as other sockets leave channels: not subscribed, asked again later.
    const full = held ? undefined : this.host.channelRoom(channelTopic(principal.tenant, channel));
    if (full !== undefined) {
      this.send({
        type: "error",
        code: "try_again",
        channel,
        retryAfterMs: CHANNEL_CAP_RETRY_MS,
        message: full,
      });
      return;
    }
    // A subscribe replaces one still reading the log.
    this.cancelReplay(channel);
    this.presenceAsked.set(channel, presence);
    const resumed =
      since === undefined
        ? undefined
        : this.host.resume.after(principal.tenant, channel, since, Number.MAX_SAFE_INTEGER);
    if (resumed && isPending(resumed)) this.replayFromLog(principal, channel, resumed, since);
    else this.answerResume(principal, channel, resumed, [], since);
  }

  /** Channels subscribed or still reading their replay (a channel can be both: asked again with a `since`). */
  private subscriptionCount(): number {
    let count = this.channels.size;
    for (const channel of this.replays.keys()) if (!this.channels.has(channel)) count++;
    return count;
  }

  /**
   * Joins the channel and sends the replay: `subscribed`, the replayed events,
   * then the live frames held back while they were read. The engine
   * subscription is taken in the same tick, so no live event slips between.
   */
  private answerResume(
    principal: Principal,
    channel: string,
    resumed: ResumeOutcome | undefined,
    held: PendingReplay["held"],
    since: string | undefined,
  ): void {
    const metrics = this.host.metrics;
    if (resumed?.kind === "try_again") {
      this.tryAgain(channel, resumed.retryAfterMs, resumed.message);
      return;
    }
    if (resumed?.kind === "events" && !resumed.complete) {
      // A replay bound stopped the read: the events so far, in order, then where to go on from.
      for (const event of resumed.events) this.sendText(event.frame);
      this.tryAgain(channel, 0, "the replay is larger than one read; resubscribe from the last event");
      return;
    }
    const topic = channelTopic(principal.tenant, channel);
    if (!this.channels.has(channel)) {
      this.channels.add(channel);
      this.host.countTopic(topic, 1);
      this.host.presence(topic, principal.subject, 1);
      metrics.wsSubscriptions.inc();
    }
    // Again too for a channel whose live frames were held back from the engine while the log was read.
    this.peer?.subscribe(topic);
    const lastEventId = this.host.resume.position(principal.tenant, channel);
    // What the client holds once this answer is sent: after a resume, the last event replayed (else its
    // since, nothing of the channel came after it); else this position. Not the position when it resumed:
    // that is the partition's head, which other channels' events move, and a ping showing it would be a gap
    // the client closes again at every ping.
    this.subscribedAt.set(
      channel,
      resumed?.kind === "events" ? (resumed.events.at(-1)?.id ?? since ?? lastEventId) : lastEventId,
    );
    this.send({ type: "subscribed", channel, lastEventId });
    // The latest subscribe of the channel says whether it wants join and leave events (a refusal is
    // said after `subscribed`: the subscription stands). They come from a timer: none falls in between.
    this.setPresenceEvents(topic, channel, this.presenceAsked.get(channel) === true);
    this.presenceAsked.delete(channel);
    if (resumed?.kind === "gone") {
      // After `subscribed`, as the SPEC orders them: the answer, then what became of the missed events.
      metrics.wsResumes.inc({ result: "history_gone" });
      this.send({
        type: "error",
        code: "history_gone",
        channel,
        message: resumed.message,
      });
    }
    if (resumed?.kind !== "events") return;
    metrics.wsResumes.inc({ result: "served" });
    const events: HistoryEvent[] = resumed.events;
    for (const event of events) this.sendText(event.frame);
    const last = events.at(-1)?.position.offset ?? -1n;
    for (const live of held) if (live.offset > last) this.sendText(live.frame);
  }

  /**
   * Holds the channel's live frames back while the log is read, then answers
   * as `answerResume`. A channel already subscribed (a client closing a gap
   * it saw) stops getting live frames straight from the engine meanwhile:
   * they would reach it before the older replayed ones and again after them,
   * and a client that moved past them drops the replay, keeping the gap.
   */
  private replayFromLog(
    principal: Principal,
    channel: string,
    pending: PendingResume,
    since: string | undefined,
  ): void {
    const replay: PendingReplay = { untap: () => {}, held: [], heldBytes: 0 };
    const { maxBytes } = this.host.resume.limits;
    const topic = channelTopic(principal.tenant, channel);
    if (this.channels.has(channel)) this.peer?.unsubscribe(topic);
    replay.untap = this.host.tap(topic, (frame, offset) => {
      if (offset < pending.until) return;
      replay.held.push({ frame, offset });
      replay.heldBytes += frame.length;
      if (replay.heldBytes > maxBytes) {
        this.cancelReplay(channel);
        this.tryAgain(channel, 0, "live events outran the replay");
      }
    });
    this.replays.set(channel, replay);
    this.host.metrics.wsResumeLogReads.inc();
    pending.outcome.then((resumed) => {
      if (this.replays.get(channel) !== replay) return;
      this.cancelReplay(channel);
      // A token refreshed meanwhile may no longer allow the channel.
      if (this.live && this.principal && channelAllowed(this.principal, channel))
        this.answerResume(this.principal, channel, resumed, replay.held, since);
    });
  }

  private cancelReplay(channel: string): void {
    const replay = this.replays.get(channel);
    if (!replay) return;
    replay.untap();
    this.replays.delete(channel);
  }

  /**
   * A replay bound was hit: the channel is not subscribed (no longer, when it
   * was: its live frames were held back for the replay that is not coming),
   * and the client asks again, from its last event, after the delay.
   */
  private tryAgain(channel: string, retryAfterMs: number, message: string): void {
    if (this.channels.has(channel)) this.unsubscribe(channel);
    this.presenceAsked.delete(channel);
    this.host.metrics.wsResumes.inc({ result: "try_again" });
    this.send({ type: "error", code: "try_again", channel, retryAfterMs, message });
  }

  private unsubscribe(channel: string): void {
    this.presenceAsked.delete(channel);
    this.cancelReplay(channel);
    if (!this.principal || !this.channels.delete(channel)) return;
    this.subscribedAt.delete(channel);
    const topic = channelTopic(this.principal.tenant, channel);
    this.peer?.unsubscribe(topic);
    this.host.countTopic(topic, -1);
    this.host.presence(topic, this.principal.subject, -1);
    this.setPresenceEvents(topic, channel, false);
    this.host.metrics.wsSubscriptions.dec();
  }

  /** Subscribes the socket to the channel's join and leave events, or unsubscribes it. */
  private setPresenceEvents(topic: string, channel: string, on: boolean): void {
    if (on === this.presenceChannels.has(channel)) return;
    if (on) {
      if (!this.host.watchPresence(topic, 1)) {
        // The subscription stands, without join and leave events: those channels cost every instance a check each second.
        this.send({
          type: "error",
          code: "unavailable",
          channel,
          message: "no join and leave events: the tenant watches as many channels for them as it may here",
        });
        return;
      }
      this.presenceChannels.add(channel);
      this.peer?.subscribe(presenceTopic(topic));
    } else {
      this.presenceChannels.delete(channel);
      this.peer?.unsubscribe(presenceTopic(topic));
      this.host.watchPresence(topic, -1);
    }
  }

  private withinMessageRate(): boolean {
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowMessages = 0;
    }
    this.windowMessages++;
    const { maxMessagesPerSec } = this.host.limits;
    if (this.windowMessages <= maxMessagesPerSec) return true;
    this.host.metrics.rateLimited.inc({ scope: "ws_message" });
    if (this.windowMessages === maxMessagesPerSec + 1) {
      this.send({ type: "error", code: "rate_limited", message: "too many messages; slow down" });
    }
    return false;
  }
}

/** A refused publish as an error frame: the HTTP code where WebSocket frames have it, `retryAfterMs` when worth retrying. */
function publishError(error: unknown): Record<string, unknown> {
  if (!isGatewayError(error))
    return { type: "error", code: "unavailable", message: "publish failed", retryAfterMs: 1000 };
  if (error.code === "bad_request") return { type: "error", code: "bad_channel", message: error.message };
  if (error.code === "forbidden") return { type: "error", code: "forbidden", message: error.message };
  // Over PUBLISH_MAX_BYTES, or more than Kafka ever takes: final, as HTTP's 413 is.
  if (error.code === "payload_too_large" || error.code === "record_too_large")
    return { type: "error", code: "payload_too_large", message: error.message };
  const retryAfter = Number(error.headers["retry-after"] ?? 1);
  const code = error.code === "rate_limited" ? "rate_limited" : "unavailable";
  return { type: "error", code, message: error.message, retryAfterMs: retryAfter * 1000 };
}
