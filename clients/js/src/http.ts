/** HTTP helpers: URLs, credentials, liveness, channel history. */
import type { Envelope } from "./types.js";

export type Fetch = typeof fetch;

export function trimBase(url: string): string {
  return url.replace(/\/+$/, "");
}

/** `http://host/x` -> `ws://host/x/ws`, `https:` -> `wss:`. */
export function webSocketUrl(base: string): string {
  return trimBase(base).replace(/^http/i, "ws") + "/ws";
}

export function authHeaders(token: string | null): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** `a,b` with each name escaped (commas stay separators). */
export function channelList(channels: string[]): string {
  return channels.map(encodeURIComponent).join(",");
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function getJson(f: Fetch, url: string, token: string | null, signal?: AbortSignal): Promise<any> {
  const res = await f(url, { headers: { accept: "application/json", ...authHeaders(token) }, signal });
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new HttpError(res.status, body?.error?.message ?? `HTTP ${res.status}`);
  }
  return res.json();
}

/** Whether the server answers HTTP at all (`GET /health`). */
export async function reachable(f: Fetch, base: string): Promise<boolean> {
  try {
    const res = await f(`${base}/health`, { signal: AbortSignal.timeout(5000) });
    return res.ok;
  } catch {
    return false;
  }
}

export interface HistoryPage {
  epoch: string | null;
  seq: number;
  publications: Envelope[];
}

/**
 * Every publication of `channel` after `since` that the server still holds, oldest first,
 * fetched in pages of `limit` (`GET /api/v1/channels/{channel}/history?since=&limit=`).
 */
export async function fetchHistory(
  f: Fetch,
  base: string,
  channel: string,
  since: number,
  limit: number,
  token: string | null,
): Promise<HistoryPage> {
  const all: Envelope[] = [];
  let from = since;
  let epoch: string | null = null;
  let seq = 0;
  for (;;) {
    const url = `${base}/api/v1/channels/${encodeURIComponent(channel)}/history?since=${from}&limit=${limit}`;
    const page = await getJson(f, url, token);
    if (all.length > 0 && page.epoch !== epoch) break; // the epoch changed between pages: keep what we have
    epoch = page.epoch ?? null;
    seq = page.seq ?? 0;
    const pubs: Envelope[] = page.publications ?? [];
    all.push(...pubs);
    const last = pubs[pubs.length - 1];
    if (pubs.length < limit || !last || last.seq >= seq) break;
    from = last.seq;
  }
  return { epoch, seq, publications: all };
}
