// The live dashboard: wires the @signalhub/client connection to the panels.
//
// URL options (all optional): `prices=BTC-USD,ETH-USD` (the tickers), `retry_ms` and
// `max_retry_ms` (the client's reconnect backoff), `transports=websocket,sse,poll`, and the
// signal filters `pair=` (a part of the pair), `side=BUY`, `tier=premium` (kept up to date by
// the filter bar).

import { SignalHubClient, type Envelope, type TransportKind } from "../../clients/js/src/index.ts";
import { getJson, HttpError } from "./api";
import { BotsPanel } from "./bots";
import { SignalFeed } from "./feed";
import { FilterBar, filtersFrom } from "./filters";
import { StatsPanel } from "./stats";
import { StatusBar } from "./status";
import { priceChannels, Tickers } from "./tickers";
import { tokenClaims } from "./token";
import type { LockedStub, SignalRecord } from "./types";

const DEFAULT_PRICES = "price:BTC-USD,price:ETH-USD,price:EUR-USD";

const params = new URLSearchParams(location.search);
const intParam = (name: string): number | undefined => {
  const v = Number(params.get(name));
  return params.has(name) && Number.isFinite(v) && v >= 0 ? v : undefined;
};

const status = new StatusBar(document);
const bots = new BotsPanel(document.getElementById("bots")!);
const feed = new SignalFeed(document.getElementById("signals")!, (rec, ts) => {
  bots.seen(rec, ts);
  filterBar.seen(rec);
});
const initialFilters = filtersFrom(params);
const filterBar = new FilterBar(document.getElementById("filters")!, initialFilters, (f) => feed.setFilters(f));
feed.setFilters(initialFilters);
const tickers = new Tickers(document.querySelector(".prices") as HTMLElement, priceChannels(params.get("prices") ?? DEFAULT_PRICES));
const stats = new StatsPanel(document.getElementById("server")!);

/** The token the viewer pasted (accepted by the server), used for the HTTP reads too. */
let token: string | null = null;

/** Who the page views as: from the server's `welcome`/`authenticated`, or a token's claims. */
const identity = { user: null as string | null, tier: "free" };

function setIdentity(user: string | null | undefined, tier: string | null | undefined): void {
  const next = (tier ?? "free").toLowerCase();
  identity.user = user ?? null;
  status.setIdentity(identity.user, next);
  if (next !== identity.tier) {
    identity.tier = next;
    feed.viewerTier = next;
    void loadSignals(); // what this tier sees, reconciled with the feed when it is in
  }
}

const KINDS: TransportKind[] = ["websocket", "sse", "poll"];
const transports = (params.get("transports") ?? "")
  .split(",")
  .map((t) => t.trim())
  .filter((t): t is TransportKind => (KINDS as string[]).includes(t));
const client = new SignalHubClient({
  url: location.origin,
  anonymousId: anonymousId(),
  initialDelayMs: intParam("retry_ms"),
  maxDelayMs: intParam("max_retry_ms"),
  ...(transports.length ? { transports } : {}),
});

function anonymousId(): string {
  try {
    const saved = sessionStorage.getItem("signalhub.anonymousId");
    if (saved) return saved;
    const id = `dash-${Math.random().toString(36).slice(2, 10)}`;
    sessionStorage.setItem("signalhub.anonymousId", id);
    return id;
  } catch {
    return `dash-${Math.random().toString(36).slice(2, 10)}`;
  }
}

/**
 * Loads recent signals over HTTP: the channel history and the store, both with locked stubs
 * for what is above the viewer's tier (`locked=true`), so that a reload, or a server restart
 * that emptied the history, keeps the locked rows the page showed live.
 */
let loading: Promise<void> | null = null;
let loadAgain = false;
function loadSignals(): Promise<void> {
  if (loading) {
    loadAgain = true;
    return loading;
  }
  loading = (async () => {
    do {
      loadAgain = false;
      const [history, stored] = await Promise.allSettled([
        getJson<{ publications?: Envelope[] }>("/api/v1/channels/signals/history?limit=50", token),
        getJson<{ signals?: Array<SignalRecord | LockedStub> }>("/api/v1/signals?limit=50&locked=true", token),
      ]);
      if (history.status === "fulfilled") {
        for (const env of history.value.publications ?? []) feed.addEnvelope({ ...env, channel: "signals" }, false);
      }
      if (stored.status === "fulfilled") feed.addRecords(stored.value.signals ?? []);
      feed.applyTier(identity.tier);
    } while (loadAgain);
  })().finally(() => {
    loading = null;
  });
  return loading;
}

async function seedTickers(): Promise<void> {
  await Promise.all(
    tickers.channels.map(async (channel) => {
      try {
        const h = await getJson<{ publications?: Envelope[] }>(`/api/v1/channels/${encodeURIComponent(channel)}/history?limit=60`);
        tickers.seed(channel, h.publications ?? []);
      } catch {
        // the live subscription fills it
      }
    }),
  );
}

// Connection status and identity. A new epoch on `signals` (a restarted server) is resynced
// by the client, which delivers the missed publications to the subscription; the stored
// signals are read again too, for what the channel history no longer holds.
client.on("state", (state) => status.setState(state, client.transport));
client.on("welcome", (info) => {
  // With a token, the `auth` frame that follows the welcome decides the identity.
  if (!token) setIdentity(info.user ?? null, info.tier);
});
client.on("authenticated", (info) => setIdentity(info.user ?? null, info.tier));
client.on("resync", (info) => {
  if (info.channel === "signals") void loadSignals();
});
client.on("error", (e) => {
  console.warn("signalhub:", e.code, e.message);
  if (e.code === "unauthorized" && !e.channel && token) {
    // The token was refused on a (re)connection, for example because it expired.
    setIdentity(client.user, client.tier ?? "free");
    showResult("error", `Token refused: ${e.message}`);
  }
});

client.subscribe("signals", (env) => feed.addEnvelope(env));
for (const channel of tickers.channels) client.subscribe(channel, (env) => tickers.add(env));
status.setState(client.state, client.transport);
client.connect();
void loadSignals();
void seedTickers();
stats.start();

setInterval(() => {
  const now = Date.now();
  feed.tick(now);
  bots.tick(now);
  tickers.tick(now);
}, 1000);

// The token form: progressive auth, the tier without reconnecting.
const form = document.getElementById("token-form") as HTMLFormElement;
const input = document.getElementById("token") as HTMLTextAreaElement;
const result = document.getElementById("token-result") as HTMLElement;
const clear = document.getElementById("token-clear") as HTMLButtonElement;

function showResult(kind: "ok" | "error" | "", text: string): void {
  result.className = `result ${kind}`;
  result.textContent = text;
}

async function applyToken(next: string | null): Promise<void> {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  showResult("", next ? "Checking token…" : "Signing out…");
  const previous = token;
  try {
    if (next) {
      // The server checks the token first (an HTTP read with it), so a refused token never
      // reaches the connection, whatever its transport.
      await getJson("/api/v1/signals?limit=1", next);
    }
    token = next;
    // Over WebSocket this is an `auth` frame, settled by the server's `authenticated`; SSE and
    // long-poll reconnect with the token and get no welcome, so the token's claims tell.
    await client.setToken(next);
    if (!next) {
      setIdentity(null, "free");
      showResult("ok", "Signed out: viewing as anonymous (free)");
    } else {
      if (client.transport !== "websocket") {
        const claims = tokenClaims(next);
        setIdentity(claims.user, claims.tier);
      }
      showResult("ok", `Viewing as ${identity.user ?? "anonymous"} · tier ${identity.tier}`);
    }
    await loadSignals();
  } catch (e) {
    token = previous;
    const message = e instanceof HttpError && e.status === 401 ? e.message : e instanceof Error ? e.message : String(e);
    showResult("error", `Token refused: ${message}`);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = input.value.trim().replace(/^Bearer\s+/i, "");
  if (!value) {
    showResult("error", "Paste a token first.");
    return;
  }
  void applyToken(value);
});
clear.addEventListener("click", () => {
  input.value = "";
  void applyToken(null);
});
