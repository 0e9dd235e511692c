/**
 * HTTP long-poll transport (`GET /api/v1/poll?channels=...&cursor=...`): each answer carries the
 * publications after the cursor and the next cursor. Without a cursor the server counts only
 * publications after the request, so what was missed before must come from history (`gap`).
 */
import { channelList, getJson, type Fetch } from "./http.js";
import type { Sink, Transport } from "./types.js";

export interface PollOptions {
  base: string;
  channels: string[];
  token: string | null;
  anonymousId?: string;
  cursor?: string;
  fetch: Fetch;
}

/** The server answers within 25 s; a request still open well after that is dead. */
const REQUEST_TIMEOUT_MS = 45_000;

export function openPoll(o: PollOptions, sink: Sink): Transport {
  let ctrl = new AbortController();
  let done = false;
  const run = async () => {
    await Promise.resolve();
    if (done) return;
    sink.open();
    let cursor = o.cursor;
    if (!cursor) sink.gap();
    while (!done) {
      const q = new URLSearchParams();
      if (cursor) q.set("cursor", cursor);
      if (o.anonymousId) q.set("anonymousId", o.anonymousId);
      const url = `${o.base}/api/v1/poll?channels=${channelList(o.channels)}&${q}`;
      let body: any;
      ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
      try {
        body = await getJson(o.fetch, url, o.token, ctrl.signal);
      } catch (e: any) {
        if (!done) {
          done = true;
          sink.close({ wasOpen: true, status: e?.status });
        }
        return;
      } finally {
        clearTimeout(timer);
      }
      if (done) return;
      if (cursor && body.recovered === false) sink.gap();
      cursor = body.cursor;
      if (cursor) sink.cursor(cursor);
      for (const p of body.publications ?? []) sink.frame(p);
    }
  };
  void run();
  return {
    kind: "poll",
    send() {
      // one-way: subscription changes restart the poll
    },
    close() {
      done = true;
      ctrl.abort();
    },
  };
}
