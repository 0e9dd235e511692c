/**
 * Server-Sent Events transport (`GET /sse?channels=...&token=...&last_event_id=...`).
 * The stream opens with a `subscribed` event; each publication event's id is the resume cursor.
 * Reconnection is the client's, not the EventSource's: any error ends the transport.
 */
import type { Sink, Transport } from "./types.js";

/** Makes an EventSource-like object for a URL. */
export type EventSourceFactory = (url: string) => any;

const OPEN_TIMEOUT_MS = 10_000;

export function openSse(url: string, create: EventSourceFactory, sink: Sink): Transport {
  let source: any;
  let opened = false;
  let done = false;
  const finish = (status?: number, reason?: string) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    try {
      source?.close();
    } catch {
      // already closed
    }
    sink.close({ wasOpen: opened, status, reason });
  };
  // A proxy that buffers the stream never delivers the first event: count that as a failure.
  const timer = setTimeout(() => finish(undefined, "no subscribed event"), OPEN_TIMEOUT_MS);
  const parse = (data: string) => {
    try {
      return JSON.parse(data);
    } catch {
      return null;
    }
  };
  try {
    source = create(url);
  } catch (e) {
    queueMicrotask(() => finish(undefined, String(e)));
  }
  if (source) {
    source.addEventListener("subscribed", (ev: { data: string }) => {
      if (done) return;
      if (!opened) {
        opened = true;
        clearTimeout(timer);
        sink.open();
      }
      const msg = parse(ev.data);
      if (msg) sink.frame({ ...msg, type: "subscribed" });
    });
    source.onmessage = (ev: { data: string; lastEventId?: string }) => {
      if (done) return;
      const msg = parse(ev.data);
      if (ev.lastEventId) sink.cursor(ev.lastEventId);
      if (msg && typeof msg.type === "string") sink.frame(msg);
    };
    source.onerror = (ev: { status?: number } | undefined) => finish(ev?.status);
  }
  return {
    kind: "sse",
    send() {
      // SSE is one-way: subscription changes reopen the stream.
    },
    close() {
      done = true;
      clearTimeout(timer);
      try {
        source?.close();
      } catch {
        // already closed
      }
    },
  };
}
