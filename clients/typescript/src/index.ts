export type { BackoffOptions } from "./backoff.js";
export {
  type CloudEventAttributes,
  CloudEventClient,
  type CloudEventInput,
  type SdkCloudEvent,
} from "./cloud-event-client.js";
export {
  BatchingClient,
  type DeliveryFailure,
  EventClient,
  type EventClientOptions,
  type EventClientStats,
  type EventRecord,
  type EventTypes,
  type FetchLike,
  KEEPALIVE_BODY_LIMIT,
  type RecordFields,
  type RetryOptions,
  type UntypedEvents,
} from "./event-client.js";
export type {
  ClickData,
  GatewayEvents,
  OrderCreatedData,
  PageViewData,
  SensorReadingData,
} from "./generated/gateway-events.js";
export { uuidv7 } from "./ids.js";
export { PROTOCOL_VERSION } from "./protocol.js";
export {
  browserQueue,
  type IdbFactoryLike,
  indexedDbQueue,
  localStorageQueue,
  type QueueStorage,
  type StorageLike,
  type StoredRecord,
} from "./storage.js";
export {
  type ChannelEvent,
  type ChannelPresence,
  type Gap,
  type GatewayErrorInfo,
  GatewayPublishError,
  GatewayRequestError,
  type HistoryPage,
  type PresenceChange,
  type PublishOptions,
  Subscriber,
  type SubscriberEvents,
  type SubscriberOptions,
  type SubscriberState,
  Subscription,
  type SubscriptionEvents,
  type SubscriptionState,
  type UnsubscribeReason,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./subscriber.js";
export type { TokenRequest, TokenSource } from "./token.js";
