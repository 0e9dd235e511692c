/** Public types of the client, and the small internal contract between the client and its transports. */

export type ConnectionState =
  | "idle"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "fallback-sse"
  | "fallback-poll"
  | "closed";

export type TransportKind = "websocket" | "sse" | "poll";

/** One publication, as the server sends it on every transport. `locked` stubs have no `data`. */
export interface Envelope {
  type: string;
  channel: string;
  epoch: string;
  seq: number;
  id: string;
  timestamp: string;
  tier?: string;
  data?: unknown;
  kind?: string;
}

export type TokenSource = () => Promise<string | null | undefined> | string | null | undefined;

export interface ClientOptions {
  /** http(s) base URL of the server, e.g. "http://127.0.0.1:8080"; the WebSocket URL is derived (/ws). */
  url: string;
  token?: string;
  /**
   * Called for a token at connect, ~30 s before the current one expires, and after close 4001.
   * When it throws or rejects, an `error` event (`token_error`, with `cause`) is emitted and
   * the client retries with backoff (state `reconnecting`); it never connects anonymously
   * instead. A still valid token is kept meanwhile.
   */
  getToken?: TokenSource;
  anonymousId?: string;
  /** Reconnect backoff: exponential with full jitter. Defaults 1000 and 30000 ms. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Transports to use, in order of preference. Default: all three, in this order. */
  transports?: TransportKind[];
  /** Constructors for environments without globals (Node 20 has fetch but no WebSocket). */
  WebSocket?: any;
  EventSource?: any;
  fetch?: typeof fetch;
  /** Page size of history fetches when resyncing a channel. Default 100. */
  historyLimit?: number;
  /** WebSocket URL, when it is not `url` with ws(s) and /ws. */
  wsUrl?: string;
  /** While on a fallback, how often to try WebSocket again. Default 30000 ms. */
  probeIntervalMs?: number;
}

export interface AuthInfo {
  auth: string;
  tier: string;
  user?: string;
}

export interface ResyncInfo {
  channel: string;
  epoch: string;
  publications: Envelope[];
}

export interface ErrorInfo {
  code: string;
  message: string;
  channel?: string;
  /** For `token_error`: what `getToken` threw or rejected with. */
  cause?: unknown;
}

export interface UnsubscribedInfo {
  channel: string;
  reason?: string;
}

export interface Subscription {
  unsubscribe(): void;
}

/** A channel position: the last publication seen. */
export interface Position {
  epoch: string;
  seq: number;
}

/** Per-channel answer of a subscribe (WebSocket frame or SSE `subscribed` event). */
export interface SubscribedChannel extends Position {
  channel: string;
  recovered: boolean;
}

/** How a transport ended. `wasOpen` false: it never connected. */
export interface CloseInfo {
  wasOpen: boolean;
  code?: number;
  reason?: string;
  /** HTTP status, when the refusal is visible (fetch, Node's `ws`). */
  status?: number;
}

/** What a transport reports to the client. Transports never call it synchronously from their constructor. */
export interface Sink {
  open(): void;
  /** A server frame, or an envelope. */
  frame(msg: any): void;
  /** An opaque SSE/long-poll resume cursor. */
  cursor(cursor: string): void;
  /** The transport could not recover what was missed: resync every channel from history. */
  gap(): void;
  close(info: CloseInfo): void;
}

export interface Transport {
  readonly kind: TransportKind;
  send(frame: object): void;
  /** Closes without reporting to the sink. */
  close(): void;
}
