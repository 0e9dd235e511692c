/** WebSocket transport: JSON text frames both ways. Works with the browser's WebSocket and Node's `ws`. */
import type { Sink, Transport } from "./types.js";

const OPEN = 1;
/** A connection that has not said `welcome` by then counts as failed (a proxy that hangs the upgrade). */
const WELCOME_TIMEOUT_MS = 10_000;

export function openWebSocket(url: string, WS: any, sink: Sink): Transport {
  let socket: any;
  let opened = false;
  let done = false;
  let status: number | undefined;
  let welcomed = false;
  const finish = (code?: number, reason?: string) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sink.close({ wasOpen: opened && welcomed, code, reason, status });
  };
  const timer = setTimeout(() => {
    finish(undefined, "no welcome");
    try {
      socket?.close(1000);
    } catch {
      // already closed
    }
  }, WELCOME_TIMEOUT_MS);
  try {
    socket = new WS(url);
  } catch (e) {
    queueMicrotask(() => finish(undefined, String(e)));
  }
  if (socket) {
    socket.onopen = () => {
      opened = true;
      if (!done) sink.open();
    };
    socket.onmessage = (ev: { data: unknown }) => {
      if (done || typeof ev.data !== "string") return;
      let msg: any;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      if (!welcomed) {
        welcomed = true;
        clearTimeout(timer);
      }
      sink.frame(msg);
    };
    socket.onerror = (ev: any) => {
      // Node's `ws` names the HTTP status of a refused upgrade; browsers tell nothing.
      const m = /Unexpected server response: (\d+)/.exec(String(ev?.message ?? ev?.error?.message ?? ""));
      if (m) status = Number(m[1]);
    };
    socket.onclose = (ev: { code?: number; reason?: string }) => finish(ev?.code, ev?.reason);
  }
  return {
    kind: "websocket",
    send(frame) {
      if (!done && socket?.readyState === OPEN) socket.send(JSON.stringify(frame));
    },
    close() {
      done = true;
      clearTimeout(timer);
      try {
        socket?.close(1000);
      } catch {
        // already closed
      }
    },
  };
}
