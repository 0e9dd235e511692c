export { SignalHubClient } from "./client.js";
export { Backoff } from "./backoff.js";
export { tokenExpiry } from "./token.js";
export type {
  AuthInfo,
  ClientOptions,
  ConnectionState,
  Envelope,
  ErrorInfo,
  ResyncInfo,
  Subscription,
  TokenSource,
  TransportKind,
  UnsubscribedInfo,
} from "./types.js";
