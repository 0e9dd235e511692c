/**
 * SignalHubClient: one logical connection to a signalhub server over WebSocket, falling back
 * to SSE and then HTTP long-poll, with reconnection, token refresh, recovery and resync.
 *
 * Subscriptions and the token are state, not queued frames: whatever was asked while offline
 * is sent on the next connection (auth first, then one subscribe carrying `since` positions).
 */
import { Backoff } from "./backoff.js";
import { Channel, type ChannelHost } from "./channel.js";
import { FetchEventSource } from "./eventsource.js";
import { channelList, fetchHistory, reachable, trimBase, webSocketUrl, type Fetch } from "./http.js";
import { openPoll } from "./poll.js";
import { RecentSet } from "./recent.js";
import { openSse } from "./sse.js";
import { expiresSoon, isExpired, refreshDelay, tokenExpiry } from "./token.js";
import type {
  AuthInfo,
  ClientOptions,
  CloseInfo,
  ConnectionState,
  Envelope,
  ErrorInfo,
  Position,
  ResyncInfo,
  Sink,
  Subscription,
  Transport,
  TransportKind,
  UnsubscribedInfo,
} from "./types.js";
import { openWebSocket } from "./ws.js";

/** WebSocket attempts that fail while the server answers HTTP, before falling back. */
const WS_FAILURES_BEFORE_FALLBACK = 3;
const SEEN_SIGNAL_IDS = 1000;
/** The server's default `limits.max_channels_per_frame`: more channels go in several frames. */
const MAX_CHANNELS_PER_FRAME = 100;

type Listener = (arg: any) => void;
type Timer = ReturnType<typeof setTimeout>;

export class SignalHubClient {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  private readonly opts: ClientOptions;
  private readonly fetchFn: Fetch;
  private readonly kinds: TransportKind[];
  private readonly backoff: Backoff;
  /** Retries of a scheduled token refresh whose getToken failed. */
  private readonly refreshBackoff: Backoff;
  private readonly channels = new Map<string, Channel>();
  private readonly seen = new RecentSet(SEEN_SIGNAL_IDS);
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly pendingAuth = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private readonly timers: { reconnect?: Timer; probe?: Timer; refresh?: Timer; heartbeat?: Timer } = {};
  private _state: ConnectionState = "idle";
  private _transport: TransportKind | null = null;
  private _tier: string | null = null;
  private _user: string | null = null;
  private token: string | null;
  private current: Transport | null = null;
  private probe: Transport | null = null;
  private welcomed = false;
  private kindIndex = 0;
  private failures = 0;
  private cursor: string | undefined;
  private nextId = 1;
  /** Bumped whenever a pending async step (an attempt, a failure check) becomes stale. */
  private gen = 0;
  private lastFrameAt = 0;
  private restartQueued = false;

  private readonly host: ChannelHost = {
    history: (channel, since) =>
      fetchHistory(this.fetchFn, this.url, channel, since, this.opts.historyLimit ?? 100, this.token),
    firstSight: (channel, id) => this.seen.add(`${channel}\n${id}`),
    resynced: (info) => this.emit("resync", info),
    error: (info) => this.emit("error", info),
  };

  constructor(opts: ClientOptions) {
    const g = globalThis as any;
    this.opts = opts;
    this.url = trimBase(opts.url);
    this.fetchFn = opts.fetch ?? ((input, init) => g.fetch(input, init));
    const hasWs = Boolean(opts.WebSocket ?? g.WebSocket);
    this.kinds = (opts.transports ?? ["websocket", "sse", "poll"]).filter((k) => k !== "websocket" || hasWs);
    if (this.kinds.length === 0) throw new Error("no transport: pass a WebSocket constructor or allow sse/poll");
    this.backoff = new Backoff(opts.initialDelayMs ?? 1000, opts.maxDelayMs ?? 30000);
    this.refreshBackoff = new Backoff(opts.initialDelayMs ?? 1000, opts.maxDelayMs ?? 30000);
    this.token = opts.token ?? null;
  }

  get state(): ConnectionState {
    return this._state;
  }
  get transport(): TransportKind | null {
    return this._transport;
  }
  get tier(): string | null {
    return this._tier;
  }
  get user(): string | null {
    return this._user;
  }

  connect(): void {
    if (this._state !== "idle" && this._state !== "closed") return;
    this.kindIndex = 0;
    this.failures = 0;
    this.backoff.reset();
    this.setState("connecting");
    this.scheduleRefresh();
    void this.attempt();
  }

  close(): void {
    this.gen++;
    this.teardown();
    this.setState("closed");
  }

  subscribe(channel: string, onPublication: (p: Envelope) => void): Subscription {
    const name = channel === "signals:all" ? "signals" : channel;
    let ch = this.channels.get(name);
    const fresh = !ch;
    if (!ch) {
      ch = new Channel(name, this.host);
      this.channels.set(name, ch);
    }
    const own = ch;
    const cb = (p: Envelope) => onPublication(p);
    own.callbacks.add(cb);
    if (fresh) this.channelsChanged([own], []);
    return {
      unsubscribe: () => {
        if (!own.callbacks.delete(cb) || own.callbacks.size > 0 || this.channels.get(name) !== own) return;
        this.channels.delete(name);
        this.channelsChanged([], [name]);
      },
    };
  }

  /**
   * Replaces the token. Over WebSocket it is sent in an `auth` frame and the promise settles
   * with the server's answer (rejects when refused); SSE and long-poll reconnect with it.
   * While offline it is used on the next connection.
   */
  setToken(token: string | null): Promise<void> {
    this.useToken(token);
    if (this._state === "idle" || this._state === "closed") return Promise.resolve();
    const t = this.current;
    if (t?.kind === "websocket") {
      if (token) return this.welcomed ? this.sendAuth(token) : Promise.resolve();
      this.restart(); // a connection cannot drop its identity: reconnect anonymously
    } else if (t || this._transport) {
      this.restart();
    }
    return Promise.resolve();
  }

  on(event: "state", cb: (s: ConnectionState) => void): () => void;
  on(event: "welcome" | "authenticated", cb: (info: AuthInfo) => void): () => void;
  on(event: "resync", cb: (info: ResyncInfo) => void): () => void;
  on(event: "error", cb: (err: ErrorInfo) => void): () => void;
  on(event: "unsubscribed", cb: (info: UnsubscribedInfo) => void): () => void;
  on(event: string, cb: Listener): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(cb);
    const own = set;
    return () => void own.delete(cb);
  }

  private emit(event: string, arg: unknown): void {
    for (const cb of [...(this.listeners.get(event) ?? [])]) {
      try {
        cb(arg);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  private setState(s: ConnectionState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit("state", s);
  }

  // ---- connecting -------------------------------------------------------------------------

  private async attempt(): Promise<void> {
    const gen = ++this.gen;
    clearTimeout(this.timers.reconnect);
    const tokenOk = await this.freshToken();
    if (gen !== this.gen || this.current || this._state === "closed") return;
    // getToken failed and there is no valid token: connecting would be anonymous. Try again.
    if (!tokenOk) return this.reconnect();
    const kind = this.kinds[this.kindIndex];
    if (kind !== "websocket" && this.channels.size === 0) {
      this.connected(kind); // nothing to stream yet: the first subscribe opens it
      return;
    }
    let t: Transport | undefined;
    const sink = this.sinkFor(() => t);
    t = this.open(kind, sink);
    this.current = t;
  }

  private open(kind: TransportKind, sink: Sink): Transport {
    const names = [...this.channels.keys()];
    const anonymousId = this.opts.anonymousId;
    if (kind === "websocket") return this.openWebSocket(sink);
    if (kind === "sse") {
      const q = new URLSearchParams();
      if (this.token) q.set("token", this.token);
      if (anonymousId) q.set("anonymousId", anonymousId);
      if (this.cursor) q.set("last_event_id", this.cursor);
      const ES = this.opts.EventSource ?? (globalThis as any).EventSource;
      const create = ES ? (u: string) => new ES(u) : (u: string) => new FetchEventSource(u, this.fetchFn);
      return openSse(`${this.url}/sse?channels=${channelList(names)}&${q}`, create, sink);
    }
    return openPoll(
      { base: this.url, channels: names, token: this.token, anonymousId, cursor: this.cursor, fetch: this.fetchFn },
      sink,
    );
  }

  private openWebSocket(sink: Sink): Transport {
    // The token goes in an `auth` frame, not the URL: it stays out of access logs, and a
    // refused token is an error frame rather than an upgrade failure.
    let url = this.opts.wsUrl ?? webSocketUrl(this.url);
    if (this.opts.anonymousId) {
      url += `${url.includes("?") ? "&" : "?"}anonymousId=${encodeURIComponent(this.opts.anonymousId)}`;
    }
    return openWebSocket(url, this.opts.WebSocket ?? (globalThis as any).WebSocket, sink);
  }

  /** Routes a transport's reports; reports of replaced transports are ignored. */
  private sinkFor(get: () => Transport | undefined): Sink {
    const live = () => {
      const t = get();
      return t !== undefined && t === this.current ? t : undefined;
    };
    return {
      open: () => {
        const t = live();
        if (t && t.kind !== "websocket") this.connected(t.kind);
      },
      frame: (msg) => {
        const t = get();
        if (t && t === this.probe && msg.type === "welcome") this.adoptProbe(t);
        if (live()) this.onFrame(msg);
      },
      cursor: (c) => {
        if (live()) this.cursor = c;
      },
      gap: () => {
        if (live()) for (const ch of this.channels.values()) ch.resync();
      },
      close: (info) => {
        const t = get();
        if (t && t === this.probe) this.probe = null;
        else if (t && t === this.current) this.onClose(t, info);
      },
    };
  }

  private connected(kind: TransportKind): void {
    this._transport = kind;
    this.failures = 0;
    this.backoff.reset();
    if (kind === "websocket") {
      this.cursor = undefined; // positions live in the channels; a stale cursor would replay
      this.stopProbe();
    } else {
      this.startProbe();
    }
    this.setState(kind === "websocket" ? "connected" : kind === "sse" ? "fallback-sse" : "fallback-poll");
  }

  private onClose(t: Transport, info: CloseInfo): void {
    this.current = null;
    this.detached();
    if (this._state === "closed") return;
    if (t.kind === "websocket" && info.wasOpen) {
      if (info.code === 1008) {
        return this.terminate({ code: "disconnected", message: info.reason || "disconnected by policy" });
      }
      if (info.code === 4001) return void this.tokenExpired();
      if (info.code === 1001) return this.reconnect(0); // the server is going away: go elsewhere now
    }
    if (info.wasOpen) return this.reconnect();
    void this.connectFailed(t.kind, info);
  }

  /** A transport that never connected: fall back when it is blocked, keep trying when the server is down. */
  private async connectFailed(kind: TransportKind, info: CloseInfo): Promise<void> {
    this.setState("reconnecting");
    const gen = this.gen;
    const refused = info.status !== undefined && info.status !== 429 && info.status < 500;
    if (refused || (await reachable(this.fetchFn, this.url))) this.failures++;
    if (gen !== this.gen) return;
    const limit = kind === "websocket" && !refused ? WS_FAILURES_BEFORE_FALLBACK : 1;
    if (this.failures >= limit && this.kindIndex < this.kinds.length - 1) {
      this.kindIndex++;
      this.failures = 0;
      return this.reconnect(0);
    }
    this.reconnect();
  }

  private reconnect(delay = this.backoff.next()): void {
    if (this._state === "closed") return;
    this.setState("reconnecting");
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => void this.attempt(), delay);
  }

  /** Reopens the current transport at once (new channel set or token for SSE/poll). */
  private restart(): void {
    const t = this.current;
    this.current = null;
    t?.close();
    this.detached();
    void this.attempt();
  }

  private terminate(err: ErrorInfo): void {
    this.gen++;
    this.teardown();
    this.setState("closed");
    this.emit("error", err);
  }

  private teardown(): void {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    for (const key of Object.keys(this.timers)) delete this.timers[key as keyof typeof this.timers];
    const t = this.current;
    const p = this.probe;
    this.current = null;
    this.probe = null;
    t?.close();
    p?.close();
    this.detached();
  }

  /** The current transport is gone. */
  private detached(): void {
    this._transport = null;
    this.welcomed = false;
    clearTimeout(this.timers.heartbeat);
    delete this.timers.heartbeat;
    // An auth still waiting for its answer is not lost: the token is sent on the next connection.
    for (const p of this.pendingAuth.values()) p.resolve();
    this.pendingAuth.clear();
  }

  // ---- going back to WebSocket from a fallback --------------------------------------------

  private startProbe(): void {
    if (this.timers.probe || this.kinds[0] !== "websocket") return;
    this.timers.probe = setInterval(() => this.probeWebSocket(), this.opts.probeIntervalMs ?? 30000);
  }

  private stopProbe(): void {
    clearTimeout(this.timers.probe);
    delete this.timers.probe;
    this.probe?.close();
    this.probe = null;
  }

  private probeWebSocket(): void {
    if (this._transport === "websocket") return this.stopProbe();
    this.probe?.close(); // a probe still pending since the last tick is abandoned
    let t: Transport | undefined;
    const sink = this.sinkFor(() => t);
    t = this.openWebSocket(sink);
    this.probe = t;
  }

  /** The probe got its welcome: it becomes the connection, the fallback is closed. */
  private adoptProbe(t: Transport): void {
    this.gen++;
    this.probe = null;
    const old = this.current;
    this.current = t;
    old?.close();
    this.detached();
    this.kindIndex = 0;
    clearTimeout(this.timers.reconnect);
  }

  // ---- server frames ----------------------------------------------------------------------

  private onFrame(msg: any): void {
    this.lastFrameAt = Date.now();
    switch (msg.type) {
      case "welcome":
        return this.onWelcome(msg);
      case "subscribed":
        for (const s of msg.channels ?? []) this.channels.get(s.channel)?.subscribed(s);
        return;
      case "unsubscribed":
        if (msg.id != null) return; // our own unsubscribe
        for (const name of msg.channels ?? []) {
          const ch = this.channels.get(name);
          if (ch) ch.lost = true;
          this.emit("unsubscribed", { channel: name, reason: msg.reason });
        }
        return;
      case "authenticated":
        return this.onAuthenticated(msg);
      case "error":
        return this.onError(msg);
      case "pong":
      case "stats":
        return;
      default:
        if (typeof msg.channel === "string" && typeof msg.seq === "number") {
          this.channels.get(msg.channel)?.publication(msg as Envelope);
        }
    }
  }

  private onWelcome(msg: any): void {
    this.welcomed = true;
    this._tier = msg.tier ?? null;
    this._user = msg.user ?? null;
    this.connected("websocket");
    this.startHeartbeat(msg.heartbeat_interval_ms ?? 25000);
    this.emit("welcome", { auth: msg.auth, tier: msg.tier, user: msg.user });
    if (this.token) this.sendAuth(this.token).catch(() => {});
    this.sendSubscribe([...this.channels.values()]);
  }

  private onAuthenticated(msg: any): void {
    this._tier = msg.tier ?? this._tier;
    this._user = msg.user ?? null;
    if (msg.id != null) {
      this.pendingAuth.get(msg.id)?.resolve();
      this.pendingAuth.delete(msg.id);
    }
    this.emit("authenticated", { auth: msg.auth, tier: msg.tier, user: msg.user });
    // A new identity may hold what the old one was refused.
    this.sendSubscribe([...this.channels.values()].filter((c) => c.lost));
  }

  private onError(msg: any): void {
    const err: ErrorInfo = { code: msg.code ?? "error", message: msg.message ?? "", channel: msg.channel };
    const pending = msg.id != null ? this.pendingAuth.get(msg.id) : undefined;
    if (pending) {
      this.pendingAuth.delete(msg.id);
      pending.reject(Object.assign(new Error(err.message), { code: err.code }));
    }
    if (typeof msg.channel === "string") {
      const ch = this.channels.get(msg.channel);
      if (ch) ch.lost = true;
    }
    this.emit("error", err);
  }

  private send(frame: object): void {
    if (this.current?.kind === "websocket" && this.welcomed) this.current.send(frame);
  }

  /** At most MAX_CHANNELS_PER_FRAME channels per frame: the server refuses a frame naming more. */
  private sendSubscribe(chs: Channel[]): void {
    for (let i = 0; i < chs.length; i += MAX_CHANNELS_PER_FRAME) {
      const chunk = chs.slice(i, i + MAX_CHANNELS_PER_FRAME);
      const since: Record<string, Position> = {};
      for (const ch of chunk) {
        ch.lost = false;
        if (ch.pos) since[ch.name] = { epoch: ch.pos.epoch, seq: ch.pos.seq };
      }
      this.send({ type: "subscribe", id: this.nextId++, channels: chunk.map((c) => c.name), since });
    }
  }

  private sendAuth(token: string): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pendingAuth.set(id, { resolve, reject });
      this.send({ type: "auth", id, token });
    });
  }

  private channelsChanged(added: Channel[], removed: string[]): void {
    const t = this.current;
    if (t?.kind === "websocket") {
      if (!this.welcomed) return; // the welcome sends every channel
      this.sendSubscribe(added);
      for (let i = 0; i < removed.length; i += MAX_CHANNELS_PER_FRAME) {
        this.send({ type: "unsubscribe", id: this.nextId++, channels: removed.slice(i, i + MAX_CHANNELS_PER_FRAME) });
      }
    } else if ((t || this._transport) && !this.restartQueued) {
      // SSE and long-poll name their channels in the request: reopen once for a batch of changes.
      this.restartQueued = true;
      queueMicrotask(() => {
        this.restartQueued = false;
        if (this._state !== "closed" && (this.current || this._transport)) this.restart();
      });
    }
  }

  /** Pings when the connection is quiet; a connection silent for two intervals is dead. */
  private startHeartbeat(intervalMs: number): void {
    clearTimeout(this.timers.heartbeat);
    this.lastFrameAt = Date.now();
    this.timers.heartbeat = setInterval(() => {
      const t = this.current;
      if (!t || t.kind !== "websocket") return;
      const quiet = Date.now() - this.lastFrameAt;
      if (quiet > 2 * intervalMs) {
        t.close();
        this.onClose(t, { wasOpen: true, code: 4000, reason: "no traffic" });
      } else if (quiet >= intervalMs) {
        this.send({ type: "ping", id: this.nextId++ });
      }
    }, intervalMs);
  }

  // ---- tokens -----------------------------------------------------------------------------

  private useToken(token: string | null): void {
    this.token = token;
    this.scheduleRefresh();
  }

  /**
   * Asks getToken. `failed`: it threw or rejected (an `error` event with the cause has been
   * emitted); otherwise `token` is what it gave (null: none).
   */
  private async callGetToken(): Promise<{ failed: boolean; token: string | null }> {
    if (!this.opts.getToken) return { failed: false, token: null };
    try {
      return { failed: false, token: (await this.opts.getToken()) ?? null };
    } catch (e: any) {
      this.emit("error", { code: "token_error", message: `getToken failed: ${String(e?.message ?? e)}`, cause: e });
      return { failed: true, token: null };
    }
  }

  /**
   * Before connecting: ask for a token when there is none or it is about to expire. False
   * when getToken failed and no valid token is left: the caller must not connect.
   */
  private async freshToken(): Promise<boolean> {
    if (!this.opts.getToken || (this.token && !expiresSoon(this.token))) return true;
    const { failed, token } = await this.callGetToken();
    if (failed) return this.token !== null && !isExpired(this.token);
    if (token && token !== this.token) this.useToken(token);
    return true;
  }

  private scheduleRefresh(): void {
    clearTimeout(this.timers.refresh);
    delete this.timers.refresh;
    const exp = this.token && this.opts.getToken ? tokenExpiry(this.token) : null;
    if (exp === null || this._state === "idle" || this._state === "closed") return;
    this.timers.refresh = setTimeout(() => void this.refreshToken(), refreshDelay(exp));
  }

  private async refreshToken(): Promise<void> {
    const { failed, token } = await this.callGetToken();
    if (this._state === "idle" || this._state === "closed") return;
    if (failed) {
      // Keep the current token (and connection) and ask again; if it expires first, the
      // server's 4001 leads to tokenExpired, which retries as well.
      clearTimeout(this.timers.refresh);
      this.timers.refresh = setTimeout(() => void this.refreshToken(), this.refreshBackoff.next());
      return;
    }
    this.refreshBackoff.reset();
    if (token && token !== this.token) await this.setToken(token).catch(() => {});
  }

  /** Close 4001: reconnect with a new token from getToken, or stop. */
  private async tokenExpired(): Promise<void> {
    this.setState("reconnecting");
    const gen = this.gen;
    const old = this.token;
    const { failed, token: next } = await this.callGetToken();
    if (gen !== this.gen || this._state === "closed") return;
    // getToken failed (not "no new token"): retry with backoff; the attempt asks it again.
    if (failed) return this.reconnect();
    if (!next || next === old || isExpired(next)) {
      return this.terminate({ code: "token_expired", message: "the token expired and getToken gave no new one" });
    }
    this.useToken(next);
    this.reconnect(0);
  }
}
