// Server figures from `GET /ws/stats`, polled every 2 s; messages per second is the delta of
// `messages_out` between two polls.

import { getJson } from "./api";
import { compact, duration } from "./format";
import type { Stats } from "./types";

export class StatsPanel {
  private prev?: { at: number; out: number };
  private timer?: ReturnType<typeof setTimeout>;
  private readonly fields: Record<string, HTMLElement> = {};
  private readonly note: HTMLElement;

  constructor(
    private readonly root: HTMLElement,
    private readonly intervalMs = 2000,
  ) {
    for (const node of root.querySelectorAll<HTMLElement>("[data-stat]")) this.fields[node.dataset.stat!] = node;
    this.note = root.querySelector(".stats-note") as HTMLElement;
  }

  start(): void {
    const poll = async () => {
      await this.poll();
      this.timer = setTimeout(poll, this.intervalMs);
    };
    void poll();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private set(name: string, text: string): void {
    const node = this.fields[name];
    if (node) node.textContent = text;
  }

  private async poll(): Promise<void> {
    try {
      const s = await getJson<Stats>("/ws/stats", null, 1800);
      const now = performance.now();
      const out = s.messages_out ?? 0;
      let rate: number | undefined;
      if (this.prev && out >= this.prev.out && now > this.prev.at) {
        rate = ((out - this.prev.out) * 1000) / (now - this.prev.at);
      }
      this.prev = { at: now, out };
      this.set("connections", compact(s.total_connections ?? 0));
      this.set("users", `${compact(s.active_users ?? 0)} users`);
      this.set("rate", rate === undefined ? "—" : rate < 10 ? rate.toFixed(1) : compact(Math.round(rate)));
      this.set("out", `${compact(out)} sent`);
      this.set("subscriptions", compact(s.subscriptions ?? 0));
      this.set("channels", `${compact(s.channels ?? 0)} channels`);
      this.set("uptime", duration(s.uptime_s ?? 0));
      this.set("publications", `${compact(s.publications ?? 0)} published`);
      this.root.classList.remove("stale");
      this.note.textContent = "live · every 2 s";
    } catch {
      this.prev = undefined;
      this.root.classList.add("stale");
      this.note.textContent = "server unreachable";
    }
  }
}
