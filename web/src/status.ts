// The connection pill and the identity (user and tier) in the top bar.

import { el } from "./format";

const LABELS: Record<string, string> = {
  idle: "Idle",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  "fallback-sse": "Fallback: SSE",
  "fallback-poll": "Fallback: polling",
  closed: "Closed",
};

const TRANSPORTS: Record<string, string> = {
  websocket: "WebSocket",
  sse: "SSE",
  poll: "long-poll",
};

export class StatusBar {
  private readonly pill: HTMLElement;
  private readonly text: HTMLElement;
  private readonly identity: HTMLElement;

  constructor(root: Document) {
    this.pill = root.getElementById("status") as HTMLElement;
    this.text = this.pill.querySelector(".status-text") as HTMLElement;
    this.identity = root.getElementById("identity") as HTMLElement;
  }

  setState(state: string, transport?: string | null): void {
    this.pill.dataset.state = state;
    let label = LABELS[state] ?? state;
    if (state === "connected" && transport) label += ` · ${TRANSPORTS[transport] ?? transport}`;
    this.text.textContent = label;
    this.pill.title = `connection state: ${state}${transport ? ` (transport: ${transport})` : ""}`;
  }

  setIdentity(user: string | null | undefined, tier: string | null | undefined): void {
    const t = (tier ?? "free").toLowerCase();
    const who = el("span", "who", user ?? "anonymous");
    who.title = user ?? "anonymous";
    const badge = el("span", `badge tier tier-${t.replace(/[^a-z0-9-]/g, "")}`, t);
    this.identity.replaceChildren(who, badge);
    this.identity.dataset.tier = t;
  }
}
