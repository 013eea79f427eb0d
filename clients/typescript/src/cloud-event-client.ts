import {
  type BatchEncoding,
  BatchingClient,
  type EventClientOptions,
  type EventTypes,
  type UntypedEvents,
} from "./event-client.js";
import { uuidv7 } from "./ids.js";

/** CloudEvents 1.0 context attributes besides `type` and `data` (extensions too: scalars, lowercase names). */
export interface CloudEventAttributes {
  /** The event's origin, a URI-reference, e.g. `/shop/web`. Required. */
  source: string;
  /** Set by the client (a UUIDv7) when absent; the same across retries, so the gateway can deduplicate by it. */
  id?: string;
  /** RFC 3339; becomes the record's `ts`. */
  time?: string | Date;
  subject?: string;
  dataschema?: string;
  /** A JSON media type when present: `data` is always a JSON object here. */
  datacontenttype?: string;
  /** The Kafka record key (the Kafka binding's `partitionkey` extension). */
  partitionkey?: string;
  specversion?: "1.0";
  [extension: string]: unknown;
}

/**
 * One CloudEvent as `CloudEventClient.enqueue` takes it: a plain object, or
 * an event of the `cloudevents` SDK (`new CloudEvent({...})`). With
 * `EventTypes`, `type` and the shape of `data` are checked at compile time.
 */
export type CloudEventInput<Events extends EventTypes = UntypedEvents> = {
  [Type in keyof Events & string]: CloudEventAttributes & { type: Type; data: Events[Type] };
}[keyof Events & string];

/**
 * An event of the `cloudevents` SDK (`new CloudEvent({...})`), as its types
 * say it (`data` optional, `specversion` a string): checked when enqueued
 * (a `data` object, `specversion` "1.0"), not at compile time. Plain objects
 * have no `toJSON`, so they keep the checks of `CloudEventInput`.
 */
export interface SdkCloudEvent {
  specversion: string;
  type: string;
  source: string;
  data?: unknown;
  toJSON(): Record<string, unknown>;
}

/** The structured-mode batch of the CloudEvents HTTP binding: a JSON array of events. */
const CLOUDEVENTS_BATCH: BatchEncoding = {
  contentType: "application/cloudevents-batch+json",
  open: "[",
  separator: ",",
  close: "]",
};

/**
 * Sends CloudEvents to `POST /v1/events` in batched mode
 * (`application/cloudevents-batch+json`), with everything `EventClient`
 * does: batching, gzip, retries, stable ids, bounds, storage, flush on page
 * hide. The gateway makes each event a record (`type`, `id`, `time` → `ts`,
 * `data`, `partitionkey` → key) and keeps its attributes as `ce_*` Kafka
 * headers. Give it a storage of its own, not one an `EventClient` uses.
 */
export class CloudEventClient<Events extends EventTypes = UntypedEvents> extends BatchingClient {
  constructor(options: EventClientOptions) {
    super(options, CLOUDEVENTS_BATCH);
  }

  /**
   * Buffers one event and returns its id, or undefined when the buffer is
   * full (dropped and counted). Throws on an event that can never be sent:
   * no `type` or `source`, `data` not a JSON object, another `specversion`.
   */
  enqueue(event: CloudEventInput<Events> | SdkCloudEvent): string | undefined {
    // An SDK event serializes through its toJSON (its own fields, extensions included).
    const attributes = (
      typeof (event as { toJSON?: unknown })?.toJSON === "function"
        ? (event as unknown as { toJSON(): Record<string, unknown> }).toJSON()
        : event
    ) as Record<string, unknown>;
    if (typeof attributes?.type !== "string" || attributes.type === "")
      throw new TypeError("a CloudEvent needs a type");
    if (typeof attributes.source !== "string" || attributes.source === "") {
      throw new TypeError("a CloudEvent needs a source");
    }
    if (attributes.specversion !== undefined && attributes.specversion !== "1.0") {
      throw new TypeError("only CloudEvents 1.0 are sent");
    }
    const data = attributes.data;
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      throw new TypeError("a CloudEvent needs a data object");
    }
    const id = typeof attributes.id === "string" && attributes.id !== "" ? attributes.id : uuidv7();
    const time = attributes.time instanceof Date ? attributes.time.toISOString() : attributes.time;
    return this.add(id, JSON.stringify({ ...attributes, specversion: "1.0", id, time }));
  }
}
