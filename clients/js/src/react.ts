/**
 * `useSignals`: the latest signals of a channel, live over the client (WebSocket with its
 * fallbacks) or by polling `GET /api/v1/signals`. Import from "@signalhub/client/react".
 *
 * `signals` holds signal records (an envelope's `data`), newest first, at most `limit`; a
 * signal above the connection's tier appears as `{ locked: true, id, tier, kind, timestamp }`.
 * The list starts from `GET /api/v1/signals?limit=` and live signals are added in front.
 */
import { useEffect, useState } from "react";
import { SignalHubClient } from "./client.js";
import { getJson, trimBase } from "./http.js";
import type { ConnectionState, Envelope } from "./types.js";

export interface UseSignalsOptions {
  client?: SignalHubClient;
  url?: string;
  token?: string;
  /** Default "signals". */
  channel?: string;
  /** Default 50. */
  limit?: number;
  /** Only signals above the lowest tier ("free"). */
  premiumOnly?: boolean;
  /** Default true; false polls `GET /api/v1/signals` every `pollInterval` ms. */
  useWebSocket?: boolean;
  /** Default 5000. */
  pollInterval?: number;
}

export interface UseSignalsResult {
  signals: unknown[];
  isLoading: boolean;
  error: Error | null;
  state: ConnectionState;
}

type Item = Record<string, unknown>;

function toItem(env: Envelope): Item | null {
  if (env.type === "locked") {
    return { locked: true, id: env.id, tier: env.tier, kind: env.kind, timestamp: env.timestamp };
  }
  return env.data && typeof env.data === "object" ? (env.data as Item) : null;
}

function keyOf(item: Item): unknown {
  return item.signal_id ?? item.id;
}

/** `fresh` in front of `old`, without repeats, at most `limit`. */
function merge(fresh: Item[], old: Item[], limit: number): Item[] {
  const seen = new Set<unknown>();
  const out: Item[] = [];
  for (const item of [...fresh, ...old]) {
    const key = keyOf(item);
    if (key !== undefined && seen.has(key)) continue;
    seen.add(key);
    out.push(item);
    if (out.length >= limit) break;
  }
  return out;
}

export function useSignals(opts: UseSignalsOptions): UseSignalsResult {
  const {
    client: given,
    url,
    token,
    channel = "signals",
    limit = 50,
    premiumOnly = false,
    useWebSocket = true,
    pollInterval = 5000,
  } = opts;
  const [signals, setSignals] = useState<Item[]>([]);
  const [isLoading, setLoading] = useState(true);
  const [error, setError] = useState<Error | null>(null);
  const [state, setState] = useState<ConnectionState>(given?.state ?? "idle");

  useEffect(() => {
    const base = trimBase(url ?? given?.url ?? "");
    let cancelled = false;
    const keep = (item: Item) => !premiumOnly || (typeof item.tier === "string" && item.tier !== "free");
    const load = async () => {
      try {
        const body = await getJson(fetch, `${base}/api/v1/signals?limit=${limit}`, token ?? null);
        if (cancelled) return;
        const list: Item[] = (body.signals ?? []).filter(keep);
        setSignals((prev) => (useWebSocket ? merge(prev, list, limit) : list.slice(0, limit)));
        setError(null);
        if (!useWebSocket) setState("fallback-poll");
      } catch (e) {
        if (cancelled) return;
        setError(e instanceof Error ? e : new Error(String(e)));
        if (!useWebSocket) setState("reconnecting");
      } finally {
        if (!cancelled) setLoading(false);
      }
    };

    if (!useWebSocket) {
      setState("connecting");
      void load();
      const timer = setInterval(() => void load(), pollInterval);
      return () => {
        cancelled = true;
        clearInterval(timer);
      };
    }

    const client = given ?? new SignalHubClient({ url: base, token });
    setState(client.state);
    const offState = client.on("state", setState);
    const offError = client.on("error", (e) => setError(Object.assign(new Error(e.message), { code: e.code })));
    const sub = client.subscribe(channel, (env) => {
      const item = toItem(env);
      if (item && keep(item)) setSignals((prev) => merge([item], prev, limit));
    });
    if (client.state === "idle") client.connect();
    void load();
    return () => {
      cancelled = true;
      sub.unsubscribe();
      offState();
      offError();
      if (!given) client.close();
    };
  }, [given, url, token, channel, limit, premiumOnly, useWebSocket, pollInterval]);

  return { signals, isLoading, error, state };
}
