/**
 * A minimal EventSource over fetch, used when no EventSource constructor is available
 * (Node 20). It does not reconnect by itself: the SSE transport handles reconnection.
 */
import type { Fetch } from "./http.js";

export interface SseMessage {
  data: string;
  lastEventId: string;
}

export class FetchEventSource {
  onopen: (() => void) | null = null;
  onmessage: ((ev: SseMessage) => void) | null = null;
  onerror: ((ev: { status?: number }) => void) | null = null;
  private readonly listeners = new Map<string, Array<(ev: SseMessage) => void>>();
  private readonly ctrl = new AbortController();
  private closed = false;

  constructor(url: string, fetchFn: Fetch) {
    void this.run(url, fetchFn);
  }

  addEventListener(type: string, cb: (ev: SseMessage) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), cb]);
  }

  close(): void {
    this.closed = true;
    this.ctrl.abort();
  }

  private async run(url: string, fetchFn: Fetch): Promise<void> {
    let status: number | undefined;
    try {
      const res = await fetchFn(url, { headers: { accept: "text/event-stream" }, signal: this.ctrl.signal });
      if (!res.ok || !res.body) {
        status = res.status;
        throw new Error(`HTTP ${res.status}`);
      }
      this.onopen?.();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { type: "", data: [] as string[], id: "" };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          if (line === "") {
            if (event.data.length > 0) this.dispatch(event.type || "message", { data: event.data.join("\n"), lastEventId: event.id });
            event = { type: "", data: [], id: event.id };
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") event.data.push(val);
          else if (field === "event") event.type = val;
          else if (field === "id") event.id = val;
        }
      }
    } catch {
      // reported below
    }
    if (!this.closed) this.onerror?.({ status });
  }

  private dispatch(type: string, ev: SseMessage): void {
    if (this.closed) return;
    if (type === "message") this.onmessage?.(ev);
    for (const cb of this.listeners.get(type) ?? []) cb(ev);
  }
}
