// Small formatting helpers shared by the panels.

/** "now", "3s ago", "5m ago", "2h ago", "3d ago" for a time in milliseconds. */
export function ago(ms: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.floor((now - ms) / 1000));
  if (s < 1) return "now";
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.floor(h / 24)}d ago`;
}

/** "45s", "12m 03s", "3h 07m", "2d 04h" for a duration in seconds. */
export function duration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  if (d > 0) return `${d}d ${two(h)}h`;
  if (h > 0) return `${h}h ${two(m)}m`;
  if (m > 0) return `${m}m ${two(sec)}s`;
  return `${sec}s`;
}

function decimalsOf(n: number): number {
  const text = String(n);
  if (text.includes("e")) return 8;
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}

/**
 * A price as traders read it: at least 4 decimals below 10 (1.0950), at least 2 above,
 * never fewer than the value has (up to 8), with thousands separators.
 */
export function price(n: number): string {
  if (!Number.isFinite(n)) return "—";
  const abs = Math.abs(n);
  const min = abs < 10 ? 4 : 2;
  const digits = Math.min(8, Math.max(min, decimalsOf(n)));
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Reads a number from a JSON number or a decimal string. */
export function num(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && value.trim() !== "") {
    const n = Number(value);
    if (Number.isFinite(n)) return n;
  }
  return undefined;
}

export function percent(n: number, digits = 0): string {
  return `${(n * 100).toFixed(digits)}%`;
}

export function compact(n: number): string {
  if (!Number.isFinite(n)) return "—";
  if (Math.abs(n) < 1000) return n.toLocaleString("en-US", { maximumFractionDigits: 1 });
  return n.toLocaleString("en-US", { notation: "compact", maximumFractionDigits: 1 });
}

/** Parses an RFC 3339 time; falls back to now. */
export function time(value: unknown): number {
  if (typeof value === "string") {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return t;
  }
  return Date.now();
}

/** Creates an element with a class and optional text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The default tier ladder of the server, lowest first (spec section 1). */
export const LADDER = ["free", "premium", "holder", "whale"];

/** Whether a viewer of tier `viewer` may see a publication of tier `tier`. */
export function canSee(viewer: string | undefined, tier: string | undefined): boolean {
  if (!tier) return true;
  const need = LADDER.indexOf(tier.toLowerCase());
  const have = LADDER.indexOf((viewer ?? "free").toLowerCase());
  if (need < 0) return false;
  return have >= need;
}
